//! Graph aggregation with sample-dependent adjacencies, the inner step of CTR-GCN and InfoGCN.
//!
//! * [`subset_aggregate`] (CTR-GCN's `unit_gcn`): every channel of every sample has its own
//!   refined topology per subset, `out[n,c,t,u] = Σ_s Σ_v x[n,s,c,t,v] · (m[n,s,c,u,v] + a[s,u,v])`.
//!   One op replaces, per subset, a broadcast add of the shared topology, `N·C` batched 25×25
//!   matmuls and the sum over subsets.
//! * [`head_aggregate`] (InfoGCN's SA-GC): every frame has its own attention map per head,
//!   masked by a learned topology, `out[n,h,c,t,u] = Σ_v p[n,t,h,u,v] · a[h,u,v] · x[n,c,t,v]`.
//!   It reads `x` in its `(N, C, T, V)` layout and writes the heads as channel groups, so the
//!   per-head 1×1 convolutions become one convolution and no permuted copies are made.
//!
//! Each output element is summed in a fixed order by one task, and the gradients of the shared
//! parameters are reduced serially in sample order afterwards: results do not depend on the
//! thread count.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::mm::{gemm, View};
use crate::small::{
    heads_mm_set, pack_pair, pack_pair_into, padded, small_mm, small_mm_set, transpose_ld, Combine,
    Lhs, Mm,
};
use crate::util::{
    build_chunks, check_bias, check_cpu_f32, check_untracked, slice, tensor, uninit_view, with_all,
    with_opt, with_scratch, written_chunks, zeroed_chunks, zeros, Epilogue,
};

const SUBSET_OP: &str = "subset_aggregate";
const HEAD_OP: &str = "head_aggregate";

/// `x: (N, S, C, T, V)`, `m: (N, S, C, U, V)`, `a: (S, U, V)` → `(N, C, T, U)`,
/// `out[n,c,t,u] = Σ_s Σ_v x[n,s,c,t,v] · (m[n,s,c,u,v] + a[s,u,v])`. Differentiable in all
/// three; f32 on the CPU.
pub fn subset_aggregate(x: &Tensor, m: &Tensor, a: &Tensor) -> Result<Tensor> {
    for (t, what) in [(x, "input"), (m, "topology"), (a, "shared topology")] {
        check_cpu_f32(t, SUBSET_OP, what)?;
    }
    let (n, s, c, _, v) = x.dims5()?;
    let (nm, sm, cm, u, vm) = m.dims5()?;
    let (sa, ua, va) = a.dims3()?;
    if (nm, sm, cm, vm) != (n, s, c, v) || (sa, ua, va) != (s, u, v) {
        bail!(
            "{SUBSET_OP}: shapes {:?}, {:?} and {:?} do not match (N, S, C, T, V), \
             (N, S, C, U, V), (S, U, V)",
            x.dims(),
            m.dims(),
            a.dims()
        )
    }
    x.contiguous()?
        .apply_op3(&m.contiguous()?, &a.contiguous()?, SubsetAggregate)
}

/// `x: (N, C, T, V)`, `p: (N, T, H, U, V)`, `a: (H, U, V)` → `(N, H·C, T, U)`,
/// `out[n, h·C + c, t, u] = Σ_v p[n,t,h,u,v] · a[h,u,v] · x[n,c,t,v]`. Differentiable in all
/// three; f32 on the CPU.
pub fn head_aggregate(x: &Tensor, p: &Tensor, a: &Tensor) -> Result<Tensor> {
    for (t, what) in [(x, "input"), (p, "attention"), (a, "topology")] {
        check_cpu_f32(t, HEAD_OP, what)?;
    }
    let (n, _, t, v) = x.dims4()?;
    let (np, tp, h, u, vp) = p.dims5()?;
    let (ha, ua, va) = a.dims3()?;
    if (np, tp, vp) != (n, t, v) || (ha, ua, va) != (h, u, v) {
        bail!(
            "{HEAD_OP}: shapes {:?}, {:?} and {:?} do not match (N, C, T, V), (N, T, H, U, V), \
             (H, U, V)",
            x.dims(),
            p.dims(),
            a.dims()
        )
    }
    x.contiguous()?
        .apply_op3(&p.contiguous()?, &a.contiguous()?, HeadAggregate)
}

/// Inference: `act(w · head_aggregate(x, p, a) + b [+ residual])`, InfoGCN's graph conv with
/// its stacked per-head 1×1 convolutions (and a batch norm folded into `w`, `b`), in one pass per
/// sample. `w: (C_out, H·C)`, `b: (C_out)`, `residual: (N, C_out, T, U)`, output
/// `(N, C_out, T, U)`; `act` = ReLU when `relu`.
///
/// Why: the aggregation's output, `H·C·T·U` floats per sample (39 MB a layer at the bench's
/// batch), went to memory only for the convolution to read it back. Here it is made a tile of
/// frames at a time in a per-thread buffer and multiplied while in cache. With fewer samples
/// than twice the threads (streaming) it runs as the two ops, which spread each sample's work
/// over the threads. Fails when any input tracks gradients.
pub fn head_aggregate_conv_infer(
    x: &Tensor,
    p: &Tensor,
    a: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    residual: Option<&Tensor>,
    relu: bool,
) -> Result<Tensor> {
    const OP: &str = "head_aggregate_conv_infer";
    for (t, what) in [
        (x, "input"),
        (p, "attention"),
        (a, "topology"),
        (w, "weight"),
    ] {
        check_cpu_f32(t, OP, what)?;
    }
    check_untracked([x, p, a, w].into_iter().chain(b).chain(residual), OP)?;
    let (n, c, t, v) = x.dims4()?;
    let (np, tp, h, u, vp) = p.dims5()?;
    let (co, hc) = w.dims2()?;
    if (np, tp, vp) != (n, t, v) || a.dims() != [h, u, v] || hc != h * c {
        bail!(
            "{OP}: shapes {:?}, {:?}, {:?} and weight {:?} do not match (N, C, T, V), \
             (N, T, H, U, V), (H, U, V) and (C_out, H·C)",
            x.dims(),
            p.dims(),
            a.dims(),
            w.dims()
        )
    }
    if let Some(b) = b {
        check_bias(b, co, OP)?;
    }
    if let Some(r) = residual {
        check_cpu_f32(r, OP, "residual")?;
        if r.dims() != [n, co, t, u] {
            bail!(
                "{OP}: residual {:?} is not the output's {:?}",
                r.dims(),
                [n, co, t, u]
            )
        }
    }
    if n < 2 * rayon::current_num_threads() {
        let z = head_aggregate(x, p, a)?;
        let w3 = w.unsqueeze(2)?;
        return crate::temporal_conv_infer(&z, &w3, b, 1, 0, 1, residual.map(|r| (r, 0)), relu);
    }
    let g = HeadGeo::new(x.dims(), p.dims());
    let (x, p, a, w) = (
        x.contiguous()?,
        p.contiguous()?,
        a.contiguous()?,
        w.contiguous()?,
    );
    let res = residual.map(|r| r.contiguous()).transpose()?;
    let out = with_all([&x, &p, &a, &w], OP, |[xd, pd, ad, wd]| {
        with_opt(b, OP, |bd| {
            with_opt(res.as_ref(), OP, |rd| {
                let ep = Epilogue {
                    residual: rd.map(|d| (d, co, 0)),
                    relu,
                    plane: g.t * g.u,
                };
                Ok(head_conv_forward(g, xd, pd, ad, (wd, co), bd, &ep))
            })
        })
    })?;
    tensor(out, (g.n, co, g.t, g.u))
}

/// Floats of aggregated features per tile: a tile of frames of all `H·C` rows, made and then
/// multiplied while it sits in the core's L2 (512 KiB). Tiles of 128 KiB to 16 MiB measured the
/// same on the AVX-512 Xeon (2 MiB L2); Zen 4 has 1 MiB.
const HEAD_CONV_TILE: usize = 1 << 17;

/// One task per sample: for each tile of frames, the `(H·C) × (frames·U)` aggregation into a
/// per-thread buffer, then `out[:, tile] += w · buffer`; the epilogue once the sample is done.
fn head_conv_forward(
    g: HeadGeo,
    x: &[f32],
    p: &[f32],
    a: &[f32],
    (w, co): (&[f32], usize),
    bias: Option<&[f32]>,
    ep: &Epilogue,
) -> Vec<f32> {
    let (tv, uv, tu, hc) = (g.t * g.v, g.u * g.v, g.t * g.u, g.h * g.c);
    let wu = padded(g.u);
    let map = g.v * wu;
    let tt = (HEAD_CONV_TILE / (hc * g.u).max(1)).clamp(1, g.t.max(1));
    build_chunks(
        g.n * co * tu,
        co * tu,
        tu,
        |_, o| bias.map_or(0.0, |b| b[o]),
        |n, out| {
            with_scratch([g.h * tt * map, hc * tt * g.u], |[maps, z]| {
                // the maps' padding lanes stay zero: the packs below write only U of them
                maps.fill(0.0);
                for t0 in (0..g.t).step_by(tt) {
                    let nt = tt.min(g.t - t0);
                    let zs = nt * g.u;
                    // (p ⊙ a)ᵀ of each head and frame of the tile: V × U, padded
                    for h in 0..g.h {
                        for dt in 0..nt {
                            let pb = ((n * g.t + t0 + dt) * g.h + h) * uv;
                            let mt = &mut maps[(h * tt + dt) * map..][..map];
                            pack_pair_into(
                                mt,
                                g.u,
                                g.v,
                                &p[pb..],
                                &a[h * uv..],
                                Combine::Mul,
                                true,
                            );
                        }
                    }
                    // z[h·C + c, dt·U + u] = Σ_v x[n, c, t0 + dt, v] · map[h, dt][v, u], all
                    // heads of a frame at once
                    let zu = uninit_view(z);
                    for dt in 0..nt {
                        let l = Lhs {
                            off: n * g.c * tv + (t0 + dt) * g.v,
                            rs: tv,
                            cs: 1,
                        };
                        let m = Mm {
                            rows: g.c,
                            k: g.v,
                            cols: g.u,
                            lhs: x,
                            l,
                            rhs: &maps[dt * map..],
                            rsb: wu,
                        };
                        heads_mm_set(m, (g.h, tt * map, g.c * zs), zu, dt * g.u, zs);
                    }
                    // out[:, t0·U..] (C_out × nt·U) += w (C_out × H·C) · z (H·C × nt·U)
                    gemm(
                        co,
                        zs,
                        hc,
                        out,
                        View::new(t0 * g.u, tu, 1),
                        true,
                        w,
                        View::new(0, hc, 1),
                        z,
                        View::new(0, zs, 1),
                    );
                }
                for (o, row) in out.chunks_exact_mut(tu.max(1)).enumerate() {
                    ep.apply_row(n, o, row);
                }
            })
        },
    )
}

struct SubsetAggregate;

#[derive(Clone, Copy)]
struct SubsetGeo {
    n: usize,
    s: usize,
    c: usize,
    t: usize,
    v: usize,
    u: usize,
}

impl SubsetGeo {
    fn new(xs: &[usize], ms: &[usize]) -> Self {
        Self {
            n: xs[0],
            s: xs[1],
            c: xs[2],
            t: xs[3],
            v: xs[4],
            u: ms[3],
        }
    }
}

fn subset_forward(g: SubsetGeo, x: &[f32], m: &[f32], a: &[f32]) -> Vec<f32> {
    let (tv, uv, tu) = (g.t * g.v, g.u * g.v, g.t * g.u);
    // one chunk per (sample, channel), zeroed right before its products; `(m + a)ᵀ` is packed
    // as an add and a blocked transpose into rows padded to whole register blocks (the padding
    // lanes are never written: the kernel drops them)
    zeroed_chunks(g.n * g.c * tu, tu, |nc, o| {
        let (n, c) = (nc / g.c, nc % g.c);
        with_scratch([uv, g.v * padded(g.u)], |[sum, mt]| {
            for s in 0..g.s {
                let blk = (n * g.s + s) * g.c + c;
                let (mb, ab) = (&m[blk * uv..][..uv], &a[s * uv..][..uv]);
                for ((d, x), y) in sum.iter_mut().zip(mb).zip(ab) {
                    *d = x + y;
                }
                transpose_ld(sum, g.u, g.v, mt, padded(g.u));
                let l = Lhs {
                    off: blk * tv,
                    rs: g.v,
                    cs: 1,
                };
                small_mm(
                    Mm {
                        rows: g.t,
                        k: g.v,
                        cols: g.u,
                        lhs: x,
                        l,
                        rhs: mt,
                        rsb: padded(g.u),
                    },
                    o,
                    0,
                    g.u,
                );
            }
        });
    })
}

/// Returns (dx, dm, da).
fn subset_backward(g: SubsetGeo, x: &[f32], m: &[f32], a: &[f32], dout: &[f32]) -> [Vec<f32>; 3] {
    let (tv, uv, tu) = (g.t * g.v, g.u * g.v, g.t * g.u);
    let blocks = g.n * g.s * g.c;
    let mut dx = zeros(blocks * tv);
    let mut dm = zeros(blocks * uv);
    dx.par_chunks_mut(tv.max(1))
        .zip(dm.par_chunks_mut(uv.max(1)))
        .enumerate()
        .for_each_init(Vec::new, |meff, (blk, (dxb, dmb))| {
            let n = blk / (g.s * g.c);
            let (s, c) = ((blk / g.c) % g.s, blk % g.c);
            let gout = (n * g.c + c) * tu;
            // dx (T × V) = dout (T × U) · (m + a) (U × V)
            let (mb, ab) = (&m[blk * uv..], &a[s * uv..]);
            pack_pair(meff, g.u, g.v, mb, ab, Combine::Add, false);
            let l = Lhs {
                off: gout,
                rs: g.u,
                cs: 1,
            };
            small_mm(
                Mm {
                    rows: g.t,
                    k: g.u,
                    cols: g.v,
                    lhs: dout,
                    l,
                    rhs: meff,
                    rsb: padded(g.v),
                },
                dxb,
                0,
                g.v,
            );
            // dm (U × V) = doutᵀ (U × T) · x (T × V)
            let l = Lhs {
                off: gout,
                rs: 1,
                cs: g.u,
            };
            let xb = &x[blk * tv..];
            small_mm(
                Mm {
                    rows: g.u,
                    k: g.t,
                    cols: g.v,
                    lhs: dout,
                    l,
                    rhs: xb,
                    rsb: g.v,
                },
                dmb,
                0,
                g.v,
            );
        });
    // da[s] = Σ_{n,c} dm[n,s,c], in sample order
    let mut da = vec![0f32; g.s * uv];
    for n in 0..g.n {
        for s in 0..g.s {
            for c in 0..g.c {
                let src = &dm[((n * g.s + s) * g.c + c) * uv..][..uv];
                for (d, v) in da[s * uv..(s + 1) * uv].iter_mut().zip(src) {
                    *d += v;
                }
            }
        }
    }
    [dx, dm, da]
}

impl CustomOp3 for SubsetAggregate {
    fn name(&self) -> &'static str {
        SUBSET_OP
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
        let g = SubsetGeo::new(l1.dims(), l2.dims());
        let out = subset_forward(
            g,
            slice(s1, l1, SUBSET_OP)?,
            slice(s2, l2, SUBSET_OP)?,
            slice(s3, l3, SUBSET_OP)?,
        );
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.c, g.t, g.u))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        m: &Tensor,
        a: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = SubsetGeo::new(x.dims(), m.dims());
        let [dx, dm, da] = with_all([x, m, a, grad], SUBSET_OP, |[xd, md, ad, gd]| {
            Ok(subset_backward(g, xd, md, ad, gd))
        })?;
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dm, m.shape())?),
            Some(tensor(da, a.shape())?),
        ))
    }
}

struct HeadAggregate;

#[derive(Clone, Copy)]
struct HeadGeo {
    n: usize,
    c: usize,
    t: usize,
    v: usize,
    h: usize,
    u: usize,
}

impl HeadGeo {
    fn new(xs: &[usize], ps: &[usize]) -> Self {
        Self {
            n: xs[0],
            c: xs[1],
            t: xs[2],
            v: xs[3],
            h: ps[2],
            u: ps[3],
        }
    }
}

/// Channels per block: each task packs its maps for every frame once, then runs over the frames
/// for one block of channels at a time, so the block's output rows stay in cache while they are
/// written (frame by frame, the rows of all channels fell out of it).
const HEAD_CHANNEL_BLOCK: usize = 16;

fn head_forward(g: HeadGeo, x: &[f32], p: &[f32], a: &[f32]) -> Vec<f32> {
    let (tv, uv, tu) = (g.t * g.v, g.u * g.v, g.t * g.u);
    let wu = padded(g.u);
    let map = g.v * wu;
    // one chunk per (sample, head), written once by the products below (no fill first)
    let work = |_: &mut (), nh: usize, o: &mut [std::mem::MaybeUninit<f32>]| {
        with_scratch([g.t * map], |[maps]| {
            let (n, h) = (nh / g.h, nh % g.h);
            maps.fill(0.0);
            for (t, mt) in maps.chunks_exact_mut(map.max(1)).enumerate() {
                // (p ⊙ a)ᵀ: V × U, padded
                let pb = ((n * g.t + t) * g.h + h) * uv;
                let (pm, am) = (&p[pb..], &a[h * uv..]);
                pack_pair_into(mt, g.u, g.v, pm, am, Combine::Mul, true);
            }
            for c0 in (0..g.c).step_by(HEAD_CHANNEL_BLOCK) {
                let rows = HEAD_CHANNEL_BLOCK.min(g.c - c0);
                for t in 0..g.t {
                    // rows c of x[n, :, t, :] → rows c of out[n, h, :, t, :]
                    let l = Lhs {
                        off: (n * g.c + c0) * tv + t * g.v,
                        rs: tv,
                        cs: 1,
                    };
                    let mt = &maps[t * map..(t + 1) * map];
                    small_mm_set(
                        Mm {
                            rows,
                            k: g.v,
                            cols: g.u,
                            lhs: x,
                            l,
                            rhs: mt,
                            rsb: wu,
                        },
                        o,
                        c0 * tu + t * g.u,
                        tu,
                    );
                }
            }
        })
    };
    // SAFETY: the channel blocks cover c < C and the frames t < T, and each product writes
    // columns t·U..(t + 1)·U of its rows: every element of the (C, T, U) chunk once.
    #[allow(unsafe_code)]
    unsafe {
        written_chunks(g.n * g.h * g.c * tu, g.c * tu, || (), work)
    }
}

/// Returns (dx, dp, da).
fn head_backward(g: HeadGeo, x: &[f32], p: &[f32], a: &[f32], dout: &[f32]) -> [Vec<f32>; 3] {
    let (tv, uv, tu) = (g.t * g.v, g.u * g.v, g.t * g.u);
    let mut dx = zeros(g.n * g.c * tv);
    // gradient with respect to the masked map p ⊙ a first; split below
    let mut dpa = zeros(g.n * g.t * g.h * uv);
    dx.par_chunks_mut((g.c * tv).max(1))
        .zip(dpa.par_chunks_mut((g.t * g.h * uv).max(1)))
        .enumerate()
        .for_each_init(Vec::new, |pas, (n, (dxn, dpn))| {
            // every (frame, head) map p ⊙ a once, then blocks of channels over the frames (as
            // in the forward pass)
            let wv = padded(g.v);
            let map = g.u * wv;
            pas.clear();
            pas.resize(g.t * g.h * map, 0.0);
            for (th, pa) in pas.chunks_exact_mut(map.max(1)).enumerate() {
                let (pm, am) = (&p[(n * g.t * g.h + th) * uv..], &a[(th % g.h) * uv..]);
                pack_pair_into(pa, g.u, g.v, pm, am, Combine::Mul, false);
            }
            for c0 in (0..g.c).step_by(HEAD_CHANNEL_BLOCK) {
                let rows = HEAD_CHANNEL_BLOCK.min(g.c - c0);
                for t in 0..g.t {
                    let xt = &x[(n * g.c + c0) * tv + t * g.v..];
                    for h in 0..g.h {
                        let gb = ((n * g.h + h) * g.c + c0) * tu + t * g.u;
                        let pa = &pas[(t * g.h + h) * map..(t * g.h + h + 1) * map];
                        // dx[n, c, t, :] (rows × V) += dout[n, h, c, t, :] (rows × U) · (p ⊙ a)
                        let l = Lhs {
                            off: gb,
                            rs: tu,
                            cs: 1,
                        };
                        small_mm(
                            Mm {
                                rows,
                                k: g.u,
                                cols: g.v,
                                lhs: dout,
                                l,
                                rhs: pa,
                                rsb: wv,
                            },
                            dxn,
                            c0 * tv + t * g.v,
                            tv,
                        );
                        // d(p ⊙ a) (U × V) += dout[n, h, c, t, :]ᵀ (U × rows) · x[n, c, t, :]
                        let l = Lhs {
                            off: gb,
                            rs: 1,
                            cs: tu,
                        };
                        let dst = (t * g.h + h) * uv;
                        small_mm(
                            Mm {
                                rows: g.u,
                                k: rows,
                                cols: g.v,
                                lhs: dout,
                                l,
                                rhs: xt,
                                rsb: tv,
                            },
                            dpn,
                            dst,
                            g.v,
                        );
                    }
                }
            }
        });
    // dp = d(p ⊙ a) ⊙ a;  da = Σ_{n,t} d(p ⊙ a) ⊙ p, in sample order
    let mut da = vec![0f32; g.h * uv];
    for (blk, (dq, pq)) in dpa.chunks_exact(uv).zip(p.chunks_exact(uv)).enumerate() {
        let h = blk % g.h;
        for ((d, dv), pv) in da[h * uv..(h + 1) * uv].iter_mut().zip(dq).zip(pq) {
            *d += dv * pv;
        }
    }
    dpa.par_chunks_mut(uv.max(1))
        .enumerate()
        .for_each(|(blk, dq)| {
            let h = blk % g.h;
            for (d, av) in dq.iter_mut().zip(&a[h * uv..(h + 1) * uv]) {
                *d *= av;
            }
        });
    [dx, dpa, da]
}

impl CustomOp3 for HeadAggregate {
    fn name(&self) -> &'static str {
        HEAD_OP
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
        let g = HeadGeo::new(l1.dims(), l2.dims());
        let out = head_forward(
            g,
            slice(s1, l1, HEAD_OP)?,
            slice(s2, l2, HEAD_OP)?,
            slice(s3, l3, HEAD_OP)?,
        );
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.n, g.h * g.c, g.t, g.u)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        a: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = HeadGeo::new(x.dims(), p.dims());
        let [dx, dp, da] = with_all([x, p, a, grad], HEAD_OP, |[xd, pd, ad, gd]| {
            Ok(head_backward(g, xd, pd, ad, gd))
        })?;
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dp, p.shape())?),
            Some(tensor(da, a.shape())?),
        ))
    }
}
