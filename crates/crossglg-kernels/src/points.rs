//! The driver shared by the transform-domain convolutions ([`crate::winograd`],
//! [`crate::toom`]): per task of a few samples, transform every input channel into `P` point
//! planes, run one gemm per point against the transformed kernel, transform every output
//! channel back and apply the epilogue. The two kernels differ only in their transforms.

use candle_core::{bail, Result, Tensor};

use crate::mm::{gemm, View};
use crate::small::with_avx2;
use crate::util::{
    check_bias, check_cpu_f32, check_untracked, with_scratch, zeroed_chunks, Epilogue,
};

/// The operand checks of the public transform-domain convolutions `op`: f32 CPU tensors that
/// track no gradients, `w: (C_out, C, kt)` fitting `x: (N, C, T, V)`, a positive stride and
/// kernel no longer than the padded input, a bias of `C_out` values. Returns `kt`.
pub(crate) fn check(
    op: &str,
    (x, w, b): (&Tensor, &Tensor, Option<&Tensor>),
    stride: usize,
    pad: usize,
) -> Result<usize> {
    check_cpu_f32(x, op, "input")?;
    check_cpu_f32(w, op, "weight")?;
    check_untracked([Some(x), Some(w), b].into_iter().flatten(), op)?;
    let (_, c, t, _) = x.dims4()?;
    let (co, cw, kt) = w.dims3()?;
    if cw != c {
        bail!("{op}: weight has {cw} input channels, input has {c}")
    }
    if stride == 0 || kt == 0 {
        bail!("{op}: stride and kernel size must be positive")
    }
    if t + 2 * pad < kt {
        bail!("{op}: {kt} taps are longer than the padded input ({t} + 2·{pad})")
    }
    if let Some(b) = b {
        check_bias(b, co, op)?;
    }
    Ok(kt)
}

/// Sizes of one transform-domain convolution.
#[derive(Clone, Copy)]
pub(crate) struct Points {
    /// samples
    pub n: usize,
    /// input channels of the stride-1 problem (time phases stacked) and output channels
    pub cs: usize,
    pub co: usize,
    /// transform points
    pub p: usize,
    /// columns per sample (tiles × joints)
    pub tv: usize,
    /// floats per input and per output sample
    pub in_n: usize,
    pub out_n: usize,
    /// floats of transform scratch per call of `input` / `output`
    pub scratch: usize,
}

/// Where a transform reads or writes its point planes: plane `p` of the channel starts at
/// `buf[p·plane + at..]` and holds `tv` values.
#[derive(Clone, Copy)]
pub(crate) struct Planes {
    pub at: usize,
    pub plane: usize,
}

/// Runs the convolution. `u` is the transformed kernel, `(P, C_out, C_s)`. `input(x_sample,
/// cp, sc, vb, planes)` writes the transformed input channel `cp` of one sample;
/// `output(o, mb, planes, sc, out_row)` writes output channel `o` of one sample (the bias
/// included). Mark both closures `#[inline(always)]`: they run inside the AVX2 context.
pub(crate) fn run(
    g: Points,
    u: &[f32],
    x: &[f32],
    input: impl Fn(&[f32], usize, &mut [f32], &mut [f32], Planes) + Sync,
    output: impl Fn(usize, &[f32], Planes, &mut [f32], &mut [f32]) + Sync,
    ep: &Epilogue,
) -> Vec<f32> {
    // enough samples per task that each gemm has at least ~200 columns (short sequences have
    // few tiles)
    let spt = 200usize.div_ceil(g.tv.max(1)).clamp(1, g.n.max(1));
    let (cs, co, row) = (g.cs, g.co, g.out_n / g.co.max(1));
    zeroed_chunks(g.n * g.out_n, spt * g.out_n, |task, dst| {
        let ns = dst.len() / g.out_n.max(1);
        let cols = ns * g.tv;
        let sizes = [g.p * cs * cols, g.p * co * cols, g.scratch];
        with_scratch(sizes, |[vb, mb, sc]| {
            with_avx2(
                #[inline(always)]
                || {
                    for nl in 0..ns {
                        let xn = &x[(task * spt + nl) * g.in_n..][..g.in_n];
                        for cp in 0..cs {
                            let at = cp * cols + nl * g.tv;
                            let planes = Planes {
                                at,
                                plane: cs * cols,
                            };
                            input(xn, cp, sc, vb, planes);
                        }
                    }
                },
            );
            for p in 0..g.p {
                gemm(
                    co,
                    cols,
                    cs,
                    mb,
                    View::new(p * co * cols, cols, 1),
                    false,
                    u,
                    View::new(p * co * cs, cs, 1),
                    vb,
                    View::new(p * cs * cols, cols, 1),
                );
            }
            with_avx2(
                #[inline(always)]
                || {
                    for nl in 0..ns {
                        for o in 0..co {
                            let oc = &mut dst[nl * g.out_n + o * row..][..row];
                            let planes = Planes {
                                at: o * cols + nl * g.tv,
                                plane: co * cols,
                            };
                            output(o, mb, planes, sc, oc);
                            ep.apply_row(task * spt + nl, o, oc);
                        }
                    }
                },
            );
        })
    })
}

/// Writes tile-major output rows back as frames: row `i` of `y` holds, for every tile `τ`, the
/// `v` values of frame `m·τ + i`; frames past the end of `oc` (`T_out · v` values) are dropped.
#[inline(always)]
pub(crate) fn untile(y: &[f32], m: usize, tiles: usize, v: usize, oc: &mut [f32]) {
    let (tv, t_out) = (tiles * v, oc.len() / v.max(1));
    for (i, yi) in y.chunks_exact(tv.max(1)).take(m).enumerate() {
        for tau in 0..tiles {
            let t = m * tau + i;
            if t < t_out {
                oc[t * v..][..v].copy_from_slice(&yi[tau * v..][..v]);
            }
        }
    }
}
