//! ST-GCN (Yan, Xiong, Lin, AAAI 2018), features only (the classifier lives in CrossGLG).
//!
//! Follows `net/st_gcn.py` of yysijie/st-gcn: data BN over `V·C`, blocks of
//! graph conv (1×1 conv to `K·C_out`, aggregation with `A_k ⊙ importance_k`) → BN → ReLU →
//! temporal conv (9, 1) → BN, plus residual, ReLU. The first block has no residual.
//! Difference: the partitions are normalised per subset as CTR-GCN does (see [`Graph`]).

use crate::encoder_config::EncoderConfig;
use crate::error::Result;
use crate::graph::Graph;
use crate::init::CONV_INIT;
use crate::layers::{
    aggregate, batch_norm, bn_act, bn_affine, conv1x1, conv_bn_act, joint_weight_mul, sum_each,
    untracked, Residual, TemporalConv,
};
use candle_core::Tensor;
use candle_nn::{BatchNorm, Init, VarBuilder};

struct Block {
    /// `(K·C_out, C_in, 1, 1)` as in `ConvTemporalGraphical.conv`.
    gcn_w: Tensor,
    gcn_b: Tensor,
    bn0: BatchNorm,
    tconv: TemporalConv,
    bn1: BatchNorm,
    residual: Residual,
    importance: Option<Tensor>,
    c_out: usize,
}

pub struct StGcn {
    pub(crate) cfg: EncoderConfig,
    data_bn: BatchNorm,
    /// `(K, V, V)` spatial partitions.
    a: Tensor,
    blocks: Vec<Block>,
}

impl StGcn {
    pub fn new(cfg: &EncoderConfig, graph: &Graph, vb: VarBuilder) -> Result<Self> {
        let v = graph.num_joints;
        let a = graph.spatial_tensor(vb.device())?.to_dtype(vb.dtype())?;
        let k = a.dim(0)?;
        let data_bn = batch_norm(cfg.in_channels * v, 1.0, vb.pp("data_bn"))?;
        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        let mut c_in = cfg.in_channels;
        for (i, spec) in cfg.blocks.iter().enumerate() {
            let b = vb.pp(format!("st_gcn_networks.{i}"));
            let c_out = spec.channels;
            let gcn_w =
                b.pp("gcn.conv")
                    .get_with_hints((k * c_out, c_in, 1, 1), "weight", CONV_INIT)?;
            let gcn_b = b
                .pp("gcn.conv")
                .get_with_hints(k * c_out, "bias", Init::Const(0.))?;
            let importance = if cfg.edge_importance {
                Some(vb.get_with_hints(
                    (k, v, v),
                    &format!("edge_importance.{i}"),
                    Init::Const(1.),
                )?)
            } else {
                None
            };
            blocks.push(Block {
                gcn_w: gcn_w.reshape((k * c_out, c_in))?,
                gcn_b,
                bn0: batch_norm(c_out, 1.0, b.pp("tcn.0"))?,
                tconv: TemporalConv::new(
                    c_out,
                    c_out,
                    cfg.temporal_kernel,
                    spec.stride,
                    1,
                    cfg.kernels,
                    b.pp("tcn.2"),
                )?,
                bn1: batch_norm(c_out, 1.0, b.pp("tcn.3"))?,
                residual: Residual::new(
                    i > 0,
                    c_in,
                    c_out,
                    spec.stride,
                    cfg.kernels,
                    b.pp("residual"),
                )?,
                importance,
                c_out,
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
        let (n, c, t, v, m) = x.dims5()?;
        let h = x
            .permute((0, 4, 3, 1, 2))?
            .contiguous()?
            .reshape((n * m, v * c, t))?;
        let h = bn_act(self.cfg.kernels, &self.data_bn, &h, None, false, train)?;
        h.reshape((n, m, v, c, t))?
            .permute((0, 1, 3, 4, 2))?
            .contiguous()?
            .reshape((n * m, c, t, v))
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
        let res = blk.residual.forward(h, train)?;
        let a = match &blk.importance {
            Some(imp) => (&self.a * imp)?,
            None => self.a.clone(),
        };
        let c = blk.c_out;
        let k = a.dim(0)?;
        if let (false, None, Some((g0, b0))) = (train, joint_weight, blk.bn0.weight_and_bias()) {
            let all = [h, &blk.gcn_w, &blk.gcn_b, &a, g0, b0];
            if self.cfg.kernels.applies(&all) && untracked(&all) {
                return self.block_infer(blk, h, &a, res.as_ref(), (g0, b0));
            }
        }
        let mut y = if self.cfg.kernels.applies(&[h, &blk.gcn_w, &a]) {
            // One kernel for the 1×1 conv and the K aggregations, then the bias.
            let (a_t, bias) = fused_gcn_operands(blk, &a)?;
            let y = crossglg_kernels::graph_conv(h, &blk.gcn_w, &a_t)?;
            crossglg_kernels::channel_joint_bias(&y, &bias)?
        } else if self.cfg.kernels.device_forms(&[h, &blk.gcn_w, &a]) {
            // The fused kernel's arrangement in candle ops (a 1×1 conv commutes with the joint
            // aggregation): every A_k applied to the input in one product, one convolution over
            // the K·C_in stacked channels, the bias as it comes out of the aggregation.
            let (n, ci, t, v) = h.dims4()?;
            let (a_t, bias) = fused_gcn_operands(blk, &a)?;
            let stacked = a_t.permute((1, 0, 2))?.contiguous()?.reshape((v, k * v))?;
            let z = h
                .contiguous()?
                .reshape((n * ci * t, v))?
                .matmul(&stacked)?
                .reshape((n, ci, t, k, v))?
                .permute((0, 3, 1, 2, 4))?
                .contiguous()?
                .reshape((n, k * ci, t, v))?;
            let w = blk
                .gcn_w
                .reshape((k, c, ci))?
                .permute((1, 0, 2))?
                .contiguous()?
                .reshape((c, k * ci))?;
            conv1x1(&z, &w, None)?.broadcast_add(&bias.reshape((1, c, 1, v))?)?
        } else {
            sum_each((0..k).map(|k| {
                let w = blk.gcn_w.narrow(0, k * c, c)?;
                let b = blk.gcn_b.narrow(0, k * c, c)?;
                aggregate(&conv1x1(h, &w, Some(&b))?, &a.get(k)?)
            }))?
        };
        if let Some(w) = joint_weight {
            y = joint_weight_mul(self.cfg.kernels, &y, w)?;
        }
        let y = bn_act(self.cfg.kernels, &blk.bn0, &y, None, true, train)?;
        let r = res.as_ref().map(|r| (r, 0));
        conv_bn_act(&blk.tconv, &blk.bn1, &y, r, true, train)
    }

    /// Inference on f32 CPU tensors that track no gradients: two kernels per block. The graph
    /// conv takes `bn0` folded in (its scale in the weights; its shift plus the conv bias
    /// carried through the aggregation as a per-(channel, joint) offset) and the ReLU; the
    /// temporal conv takes `bn1`, the residual and the ReLU.
    fn block_infer(
        &self,
        blk: &Block,
        h: &Tensor,
        a: &Tensor,
        res: Option<&Tensor>,
        (g0, b0): (&Tensor, &Tensor),
    ) -> candle_core::Result<Tensor> {
        let (k, c, c_in) = (a.dim(0)?, blk.c_out, h.dim(1)?);
        let (scale, shift) = bn_affine(&blk.bn0, g0, b0)?;
        let w = blk
            .gcn_w
            .reshape((k, c, c_in))?
            .broadcast_mul(&scale.reshape((1, c, 1))?)?
            .reshape((k * c, c_in))?;
        // the conv bias carried through the aggregation, then the batch norm
        let (a_t, bias) = fused_gcn_operands(blk, a)?;
        let offset = bias
            .broadcast_mul(&scale.unsqueeze(1)?)?
            .broadcast_add(&shift.unsqueeze(1)?)?;
        let y = crossglg_kernels::graph_conv_infer(h, &w, &a_t, &offset, true)?;
        conv_bn_act(&blk.tconv, &blk.bn1, &y, res.map(|r| (r, 0)), true, false)
    }
}

/// What the graph-conv kernels take besides the input and weight: `Aᵀ` (the kernels read
/// `A[k, v, u]`, source joint first, while `aggregate` uses `A[u][v]`), and the conv bias as it
/// comes out of the aggregation, `Σ_k b_k[o] · Σ_v A_k[u][v]`, as `(C_out, V)`.
fn fused_gcn_operands(blk: &Block, a: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let k = a.dim(0)?;
    let a_t = a.transpose(1, 2)?.contiguous()?;
    let bias = blk.gcn_b.reshape((k, blk.c_out))?.t()?.matmul(&a.sum(2)?)?;
    Ok((a_t, bias))
}
