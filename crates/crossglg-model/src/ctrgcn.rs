//! CTR-GCN (Chen et al., ICCV 2021), features only (the classifier lives in CrossGLG).
//!
//! Follows `model/ctrgcn.py` of Uason-Chen/CTR-GCN: data BN over `M·V·C`; ten `TCN_GCN_unit`s,
//! each a channel-wise topology-refinement graph conv (`unit_gcn`: per subset a CTRGC whose
//! refined topology is `conv4(tanh(φ(x)ᵤ − ψ(x)ᵥ))·α + A_s`, summed over subsets, BN, residual,
//! ReLU) followed by the multi-scale temporal conv (kernel 5, dilations 1 and 2) and a block
//! residual. Difference: the learnable topology `PA` is stored as `A + pa_delta` with
//! `pa_delta` initialised to zero (same gradients; the seeded init only knows constant/random
//! fills).

use crate::encoder_config::EncoderConfig;
use crate::error::Result;
use crate::graph::Graph;
use crate::layers::{
    batch_norm, bn_act, joint_weight_mul, pointwise, pointwise_stacked, sum_each, ConvBn, Kernels,
    MultiScaleTcn, Residual, TemporalConv,
};
use candle_core::Tensor;
use candle_nn::{BatchNorm, Init, VarBuilder};

/// CTRGC: one subset of the channel-wise refined graph conv.
struct Ctrgc {
    conv1: TemporalConv,
    conv2: TemporalConv,
    conv3: TemporalConv,
    conv4: TemporalConv,
}

impl Ctrgc {
    fn new(c_in: usize, c_out: usize, k: Kernels, vb: VarBuilder) -> candle_core::Result<Self> {
        // CTR-GCN: 8 relation channels for raw coordinates, else c_in / 8.
        let rel = if c_in == 3 || c_in == 9 {
            8
        } else {
            (c_in / 8).max(1)
        };
        Ok(Self {
            conv1: pointwise(c_in, rel, 1, k, vb.pp("conv1"))?,
            conv2: pointwise(c_in, rel, 1, k, vb.pp("conv2"))?,
            conv3: pointwise(c_in, c_out, 1, k, vb.pp("conv3"))?,
            conv4: pointwise(rel, c_out, 1, k, vb.pp("conv4"))?,
        })
    }

    /// `x_mean`, the time mean of `x`, makes `conv1`/`conv2` run on it instead of on every
    /// frame (a 1×1 convolution commutes with the mean: `T` times fewer products, and no
    /// `(N, R, T, V)` intermediates).
    ///
    /// # Shapes
    /// `x: (N, C_in, T, V)`, `x_mean: (N, C_in, 1, V)`, `a: (V, V)`, `alpha: (1)` ->
    /// `(N, C_out, T, V)`
    fn forward(
        &self,
        x: &Tensor,
        x_mean: Option<&Tensor>,
        a: &Tensor,
        alpha: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (x1, x2) = match x_mean {
            Some(m) => (
                self.conv1.forward(m)?.squeeze(2)?,
                self.conv2.forward(m)?.squeeze(2)?,
            ),
            None => (
                self.conv1.forward(x)?.mean(2)?, // (N, R, V)
                self.conv2.forward(x)?.mean(2)?,
            ),
        };
        let x3 = self.conv3.forward(x)?; // (N, C, T, V)
        let (n, r, v) = x1.dims3()?;
        let rel = x1
            .unsqueeze(3)?
            .broadcast_sub(&x2.unsqueeze(2)?)?
            .tanh()?
            .reshape((n, r, v, v))?; // (N, R, U, V)
        let topo = self
            .conv4
            .forward(&rel)?
            .broadcast_mul(alpha)?
            .broadcast_add(a)?; // (N, C, U, V)
        let (_, c, t, _) = x3.dims4()?;
        // out[n,c,t,u] = Σ_v topo[n,c,u,v] · x3[n,c,t,v]
        let x3 = x3.reshape((n * c, t, v))?;
        let topo = topo.reshape((n * c, v, v))?;
        x3.matmul(&topo.transpose(1, 2)?.contiguous()?)?
            .reshape((n, c, t, v))
    }
}

struct UnitGcn {
    convs: Vec<Ctrgc>,
    pa_delta: Tensor,
    alpha: Tensor,
    bn: BatchNorm,
    down: Option<ConvBn>,
}

impl UnitGcn {
    /// `Σ_s CTRGC_s(x, pa_s)`, the subsets one at a time with plain candle ops; with
    /// `mean_first` (the device form, `Kernels::device_forms`), `conv1`/`conv2` on the time
    /// mean as the fused form does.
    fn aggregate_plain(
        &self,
        x: &Tensor,
        pa: &Tensor,
        mean_first: bool,
    ) -> candle_core::Result<Tensor> {
        let xm = mean_first.then(|| x.mean_keepdim(2)).transpose()?;
        sum_each(
            self.convs
                .iter()
                .enumerate()
                .map(|(s, conv)| conv.forward(x, xm.as_ref(), &pa.get(s)?, &self.alpha)),
        )
    }

    /// The same sum, rearranged for the CPU (equal up to rounding; tested against
    /// [`Self::aggregate_plain`]): `conv1`/`conv2` act on the time mean of `x` (a 1×1
    /// convolution commutes with the mean), all subsets' `conv1`/`conv2` and `conv3` run as one
    /// convolution each, the relations `tanh(φᵤ − ψᵥ)` are one fused op, `α` scales `conv4`'s
    /// weights instead of its output and `conv4` is one gemm per (sample, subset), and the
    /// per-channel aggregation, the shared topology and the sum over subsets are one fused op.
    fn aggregate_fused(&self, k: Kernels, x: &Tensor, pa: &Tensor) -> candle_core::Result<Tensor> {
        let (n, _, t, v) = x.dims4()?;
        let s = self.convs.len();
        let r = self.convs[0].conv1.weight_1x1()?.dim(0)?;
        let c = self.convs[0].conv3.weight_1x1()?.dim(0)?;
        let xm = crossglg_kernels::time_mean(x)?; // (N, C_in, 1, V)
        let mut qk: Vec<&TemporalConv> = self.convs.iter().map(|g| &g.conv1).collect();
        qk.extend(self.convs.iter().map(|g| &g.conv2));
        let q = pointwise_stacked(k, &xm, &qk)?.reshape((n, 2 * s * r, v))?;
        // tanh(φᵤ − ψᵥ) per subset, plus a row of ones so conv4's bias is a weight column
        let rel = crossglg_kernels::pairwise_tanh(&q, s)?; // (N, S, R + 1, V·V)
        let mut w4 = Vec::with_capacity(s);
        for g in &self.convs {
            let w = g.conv4.weight_1x1()?;
            w4.push(match g.conv4.bias() {
                Some(b) => Tensor::cat(&[&w, &b.unsqueeze(1)?], 1)?,
                None => w.pad_with_zeros(1, 0, 1)?,
            });
        }
        let w4 = Tensor::stack(&w4, 0)?.broadcast_mul(&self.alpha)?; // (S, C, R + 1)
        let topo = crossglg_kernels::subset_weight_mm(&w4, &rel)?; // (N, S, C, V·V)
        let x3 = pointwise_stacked(
            k,
            x,
            &self.convs.iter().map(|g| &g.conv3).collect::<Vec<_>>(),
        )?;
        crossglg_kernels::subset_aggregate(
            &x3.reshape((n, s, c, t, v))?,
            &topo.reshape((n, s, c, v, v))?,
            pa,
        )
    }
}

struct Block {
    gcn: UnitGcn,
    tcn: MultiScaleTcn,
    residual: Residual,
}

pub struct CtrGcn {
    pub(crate) cfg: EncoderConfig,
    data_bn: BatchNorm,
    a: Tensor,
    blocks: Vec<Block>,
}

impl CtrGcn {
    pub fn new(cfg: &EncoderConfig, graph: &Graph, vb: VarBuilder) -> Result<Self> {
        let v = graph.num_joints;
        let a = graph.spatial_tensor(vb.device())?.to_dtype(vb.dtype())?;
        let k = a.dim(0)?;
        let data_bn = batch_norm(cfg.num_persons * v * cfg.in_channels, 1.0, vb.pp("data_bn"))?;
        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        let mut c_in = cfg.in_channels;
        for (i, spec) in cfg.blocks.iter().enumerate() {
            let b = vb.pp(format!("l{}", i + 1));
            let c_out = spec.channels;
            let g = b.pp("gcn1");
            let convs = (0..k)
                .map(|s| Ctrgc::new(c_in, c_out, cfg.kernels, g.pp(format!("convs.{s}"))))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let gcn = UnitGcn {
                convs,
                pa_delta: g.get_with_hints((k, v, v), "pa_delta", Init::Const(0.))?,
                alpha: g.get_with_hints(1, "alpha", Init::Const(0.))?,
                // CTR-GCN's bn_init(self.bn, 1e-6): the block starts close to its residual.
                bn: batch_norm(c_out, 1e-6, g.pp("bn"))?,
                down: if c_in != c_out {
                    Some(ConvBn::new(
                        c_in,
                        c_out,
                        1,
                        1,
                        1,
                        cfg.kernels,
                        g.pp("down"),
                    )?)
                } else {
                    None
                },
            };
            blocks.push(Block {
                gcn,
                tcn: MultiScaleTcn::new(
                    c_out,
                    c_out,
                    cfg.temporal_kernel,
                    spec.stride,
                    &cfg.dilations,
                    cfg.kernels,
                    b.pp("tcn1"),
                )?,
                residual: Residual::new(
                    i > 0,
                    c_in,
                    c_out,
                    spec.stride,
                    cfg.kernels,
                    b.pp("residual"),
                )?,
            });
            c_in = c_out;
        }
        Ok(Self {
            cfg: cfg.clone(),
            data_bn,
            a,
            blocks,
        })
    }

    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `(N·M, C, T, V)`
    pub fn stem(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        data_bn_mvc(self.cfg.kernels, &self.data_bn, x, train)
    }

    /// # Shapes
    /// `h: (N·M, C_in, T, V)`, `joint_weight: (N·M, 1, 1, V)` -> `(N·M, C_out, T', V)`
    pub fn block(
        &self,
        i: usize,
        h: &Tensor,
        joint_weight: Option<&Tensor>,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let blk = &self.blocks[i];
        let g = &blk.gcn;
        let pa = (&self.a + &g.pa_delta)?;
        let k = self.cfg.kernels;
        let y = if k.applies(&[h, &pa]) {
            g.aggregate_fused(k, h, &pa)?
        } else {
            g.aggregate_plain(h, &pa, k.device_forms(&[h, &pa]))?
        };
        let down = match &g.down {
            Some(d) => d.forward(h, train)?,
            None => h.clone(),
        };
        let mut y = bn_act(k, &g.bn, &y, Some(&down), true, train)?;
        if let Some(w) = joint_weight {
            y = joint_weight_mul(k, &y, w)?;
        }
        let res = blk.residual.forward(h, train)?;
        blk.tcn.forward_act(&y, res.as_ref(), true, train)
    }
}

/// CTR-GCN / InfoGCN data normalisation: `BatchNorm1d(M·V·C)` over `(N, M·V·C, T)`.
///
/// # Shapes
/// `x: (N, C, T, V, M)` -> `(N·M, C, T, V)`
pub(crate) fn data_bn_mvc(
    k: Kernels,
    bn: &BatchNorm,
    x: &Tensor,
    train: bool,
) -> candle_core::Result<Tensor> {
    let (n, c, t, v, m) = x.dims5()?;
    let h = x
        .permute((0, 4, 3, 1, 2))?
        .contiguous()?
        .reshape((n, m * v * c, t))?;
    let h = bn_act(k, bn, &h, None, false, train)?;
    h.reshape((n, m, v, c, t))?
        .permute((0, 1, 3, 4, 2))?
        .contiguous()?
        .reshape((n * m, c, t, v))
}
