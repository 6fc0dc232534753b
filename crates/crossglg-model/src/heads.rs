//! CrossGLG heads: joint importance determination (global-to-local) and the cross-modal
//! interaction blocks (local-to-global). See METHOD.md §2; widths, heads, norms and residuals
//! are reconstructions ([R]).

use crate::layers::Linear;
use crate::layers::{joint_features, linear, softmax_last, LayerNorm, MultiHeadAttention};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Joint Importance Determination: `f_pre` pooled over time and persons, then
/// `Linear(C, hidden) → ReLU → Linear(hidden, 1)` per joint and a softmax over joints.
pub struct Jid {
    fc1: Linear,
    fc2: Linear,
}

impl Jid {
    pub fn new(channels: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(channels, hidden, vb.pp("fc1"))?,
            fc2: linear(hidden, 1, vb.pp("fc2"))?,
        })
    }

    /// # Shapes
    /// `f_pre: (N·M, C, T, V)`, `persons = M` -> `k_out: (N, V)`, rows sum to 1
    pub fn forward(&self, f_pre: &Tensor, persons: usize) -> Result<Tensor> {
        let f = joint_features(f_pre, persons)?; // (N, V, C)
        self.forward_pooled(&f)
    }

    /// # Shapes
    /// `f: (N, V, C)` -> `(N, V)`
    pub fn forward_pooled(&self, f: &Tensor) -> Result<Tensor> {
        let s = self
            .fc2
            .forward(&self.fc1.forward(f)?.relu()?)?
            .squeeze(2)?;
        softmax_last(&s)
    }
}

/// One interaction block (pre-norm residuals):
/// `t ← t + SelfAttn(LN(t))`, `t ← t + CrossAttn(LN(t), LN(s))`, `t ← t + MLP(LN(t))`.
/// Without the text residual the middle step is `t ← CrossAttn(LN(t), LN(s))`.
pub struct InteractionBlock {
    text_residual: bool,
    ln_self: LayerNorm,
    self_attn: MultiHeadAttention,
    ln_q: LayerNorm,
    ln_kv: LayerNorm,
    cross_attn: MultiHeadAttention,
    ln_mlp: LayerNorm,
    mlp1: Linear,
    mlp2: Linear,
}

impl InteractionBlock {
    pub fn new(
        dim: usize,
        heads: usize,
        mlp_ratio: usize,
        text_residual: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            text_residual,
            ln_self: LayerNorm::new(dim, vb.pp("ln_self"))?,
            self_attn: MultiHeadAttention::new(dim, heads, vb.pp("self_attn"))?,
            ln_q: LayerNorm::new(dim, vb.pp("ln_q"))?,
            ln_kv: LayerNorm::new(dim, vb.pp("ln_kv"))?,
            cross_attn: MultiHeadAttention::new(dim, heads, vb.pp("cross_attn"))?,
            ln_mlp: LayerNorm::new(dim, vb.pp("ln_mlp"))?,
            mlp1: linear(dim, dim * mlp_ratio, vb.pp("mlp.0"))?,
            mlp2: linear(dim * mlp_ratio, dim, vb.pp("mlp.2"))?,
        })
    }

    /// # Shapes
    /// `text: (N, J, d)`, `skel: (N, V, d)` -> `(N, J, d)`
    pub fn forward(&self, text: &Tensor, skel: &Tensor) -> Result<Tensor> {
        let h = self.ln_self.forward(text)?;
        let t = (text + self.self_attn.forward(&h, &h)?)?;
        let q = self.ln_q.forward(&t)?;
        let kv = self.ln_kv.forward(skel)?;
        // fusion: add the text-queried skeleton context to the text stream, then the MLP
        let ctx = self.cross_attn.forward(&q, &kv)?;
        let t = if self.text_residual { (&t + ctx)? } else { ctx };
        let m = self
            .mlp2
            .forward(&self.mlp1.forward(&self.ln_mlp.forward(&t)?)?.gelu_erf()?)?;
        t + m
    }
}

/// The cross-modal branch: projections to a common width, `M` interaction blocks, mean pool
/// over text tokens, final norm and a projection back to the skeleton embedding width.
pub struct CrossModal {
    text_proj: Linear,
    skel_proj: Linear,
    joint_pos: Tensor,
    blocks: Vec<InteractionBlock>,
    ln_out: LayerNorm,
    out_proj: Linear,
}

impl CrossModal {
    /// `text_dim`: width of the frozen text embeddings; `skel_dim`: width of the joint
    /// features; `dim`: common width; `out_dim`: width of `g_s` (the classifier input).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        text_dim: usize,
        skel_dim: usize,
        num_joints: usize,
        dim: usize,
        heads: usize,
        depth: usize,
        mlp_ratio: usize,
        text_residual: bool,
        out_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            text_proj: linear(text_dim, dim, vb.pp("text_proj"))?,
            skel_proj: linear(skel_dim, dim, vb.pp("skel_proj"))?,
            // joints are a set for attention; a learned embedding tells them apart [R]
            joint_pos: vb.get_with_hints(
                (1, num_joints, dim),
                "joint_pos",
                candle_nn::Init::Randn {
                    mean: 0.,
                    stdev: 0.02,
                },
            )?,
            blocks: (0..depth)
                .map(|i| {
                    InteractionBlock::new(
                        dim,
                        heads,
                        mlp_ratio,
                        text_residual,
                        vb.pp(format!("blocks.{i}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?,
            ln_out: LayerNorm::new(dim, vb.pp("ln_out"))?,
            out_proj: linear(dim, out_dim, vb.pp("out_proj"))?,
        })
    }

    /// # Shapes
    /// `text: (N, J, D_text)`, `joints: (N, V, C)` -> `g_c: (N, out_dim)`
    pub fn forward(&self, text: &Tensor, joints: &Tensor) -> Result<Tensor> {
        let mut t = self.text_proj.forward(text)?;
        let s = self
            .skel_proj
            .forward(joints)?
            .broadcast_add(&self.joint_pos)?;
        for b in &self.blocks {
            t = b.forward(&t, &s)?;
        }
        let pooled = self.ln_out.forward(&t.mean(1)?)?;
        self.out_proj.forward(&pooled)
    }
}
