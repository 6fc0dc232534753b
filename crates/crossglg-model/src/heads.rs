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

/// L2 normalisation over the last dimension (a small epsilon keeps zero rows finite).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let n = (x.sqr()?.sum_keepdim(candle_core::D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&n)
}

/// Largest logit scale `exp(s)` the text-target branch may reach (CLIP clamps at 100).
const MAX_LOG_SCALE: f64 = 4.605_170_185_988_091; // ln 100

/// The local-to-global branch with the text as its *target* [R, beyond the paper]: skeleton
/// features are projected into a common space and scored by cosine similarity against the
/// text of **every** training class, with a learned temperature, and trained by cross-entropy
/// over the classes (as GAP, STAR and PURLS do; METHOD.md §6). Nothing in its input names the
/// class, so its loss can only fall through the skeleton features.
///
/// Two levels: the pooled skeleton embedding against each class's global description, and each
/// joint's feature against that joint's description in each class (the per-joint cosines are
/// averaged over joints into one score per class).
pub struct TextAlign {
    skel_global: Linear,
    skel_joint: Linear,
    text: TextSideParams,
    log_scale: Tensor,
}

/// Names of the fixed text side's centres inside the branch (global, per joint): buffers,
/// never trained (`crate::is_buffer`).
pub const TEXT_CENTERS: [&str; 2] = ["text_center_global", "text_center_local"];

/// How the class texts reach the common space.
enum TextSideParams {
    /// Learned projections: the branch may place each class's text anywhere.
    Learned { global: Linear, local: Linear },
    /// The text's own space: each text minus the training classes' mean (buffers
    /// `text_center_global (D)` and `text_center_local (V, D)`, set by
    /// [`crate::set_text_centers`]), so the skeleton side must reproduce the texts' geometry.
    Fixed { global: Tensor, local: Tensor },
}

/// Class scores of the text-target branch, `(N, K)` each.
#[derive(Debug, Clone)]
pub struct TextLogits {
    /// Skeleton embedding vs global descriptions.
    pub global: Tensor,
    /// Joint features vs per-joint descriptions, averaged over joints.
    pub local: Tensor,
}

impl TextLogits {
    /// The mean of both levels: the branch's class scores.
    pub fn combined(&self) -> Result<Tensor> {
        (&self.global + &self.local)? * 0.5
    }
}

impl TextAlign {
    /// `emb_dim`: width of the skeleton embedding; `joint_dim`: width of the joint features;
    /// `text_dim`: width of the frozen text embeddings; `dim`: the common width.
    pub fn new(
        emb_dim: usize,
        joint_dim: usize,
        text_dim: usize,
        dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let text = TextSideParams::Learned {
            global: linear(text_dim, dim, vb.pp("text_global"))?,
            local: linear(text_dim, dim, vb.pp("text_local"))?,
        };
        Self::with_text(emb_dim, joint_dim, dim, text, vb)
    }

    /// The branch with a fixed text side: the common space is the text's own (width
    /// `text_dim`), centred on the training classes' mean, for `joints` joints.
    pub fn new_fixed(
        emb_dim: usize,
        joint_dim: usize,
        text_dim: usize,
        joints: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let zero = candle_nn::Init::Const(0.0);
        let text = TextSideParams::Fixed {
            global: vb.get_with_hints(text_dim, TEXT_CENTERS[0], zero)?,
            local: vb.get_with_hints((joints, text_dim), TEXT_CENTERS[1], zero)?,
        };
        Self::with_text(emb_dim, joint_dim, text_dim, text, vb)
    }

    fn with_text(
        emb_dim: usize,
        joint_dim: usize,
        dim: usize,
        text: TextSideParams,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            skel_global: linear(emb_dim, dim, vb.pp("skel_global"))?,
            skel_joint: linear(joint_dim, dim, vb.pp("skel_joint"))?,
            text,
            // CLIP's initial temperature 0.07
            log_scale: vb.get_with_hints(
                (),
                "log_scale",
                candle_nn::Init::Const(2.659_260_036_932_778),
            )?,
        })
    }

    fn scale(&self) -> Result<Tensor> {
        self.log_scale.clamp(0.0, MAX_LOG_SCALE)?.exp()
    }

    /// Projected, normalised skeleton embedding `(N, d)`.
    pub fn skeleton_global(&self, g: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.skel_global.forward(g)?)
    }

    /// Projected (or centred), normalised class descriptions `(K, d)`.
    pub fn text_global(&self, t: &Tensor) -> Result<Tensor> {
        l2_normalize(&match &self.text {
            TextSideParams::Learned { global, .. } => global.forward(t)?,
            TextSideParams::Fixed { global, .. } => t.broadcast_sub(&global.detach())?,
        })
    }

    /// Projected (or centred), normalised per-joint descriptions `(K, V, d)`.
    pub fn text_local(&self, t: &Tensor) -> Result<Tensor> {
        l2_normalize(&match &self.text {
            TextSideParams::Learned { local, .. } => local.forward(t)?,
            TextSideParams::Fixed { local, .. } => t.broadcast_sub(&local.detach())?,
        })
    }

    /// Class scores: the cosines of [`TextAlign::cosines`] times the learned scale.
    ///
    /// # Shapes
    /// `g: (N, E)`, `joints: (N, V, C)`, `text_global: (K, D_text)`,
    /// `text_local: (K, V, D_text)` -> `(N, K)` twice
    pub fn forward(
        &self,
        g: &Tensor,
        joints: &Tensor,
        text_global: &Tensor,
        text_local: &Tensor,
    ) -> Result<TextLogits> {
        let cos = self.cosines(g, joints, text_global, text_local)?;
        let scale = self.scale()?;
        Ok(TextLogits {
            global: cos.global.broadcast_mul(&scale)?,
            local: cos.local.broadcast_mul(&scale)?,
        })
    }

    /// Cosine similarities in the common space, unscaled: the skeleton embedding against each
    /// class's global description, and each joint against that joint's description in each
    /// class, averaged over joints.
    ///
    /// # Shapes
    /// as [`TextAlign::forward`]
    pub fn cosines(
        &self,
        g: &Tensor,
        joints: &Tensor,
        text_global: &Tensor,
        text_local: &Tensor,
    ) -> Result<TextLogits> {
        let (_, v, _) = joints.dims3()?;
        let (_, tv, _) = text_local.dims3()?;
        if tv != v {
            candle_core::bail!(
                "text has {tv} joint descriptions per class, the skeleton {v} joints"
            )
        }
        let sg = self.skeleton_global(g)?; // (N, d)
        let tg = self.text_global(text_global)?; // (K, d)
        let global = sg.matmul(&tg.t()?)?;
        // per joint: (V, N, d) x (V, d, K) -> (V, N, K), averaged over joints
        let sj = l2_normalize(&self.skel_joint.forward(joints)?)?
            .transpose(0, 1)?
            .contiguous()?;
        let tj = self
            .text_local(text_local)?
            .permute((1, 2, 0))?
            .contiguous()?;
        let local = sj.matmul(&tj)?.mean(0)?;
        Ok(TextLogits { global, local })
    }
}

/// What the shared classifier is [R].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierKind {
    /// One linear layer (the default).
    #[default]
    Linear,
    /// `Linear → ReLU → Linear`, as the paper describes the shared classifier.
    Mlp,
    /// Cosine similarity to learned class weights times a fixed scale, trained with an
    /// additive margin on the true class (CosFace).
    Cosine,
}

/// Settings of the shared classifier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    pub kind: ClassifierKind,
    /// Hidden width of the MLP (0: the embedding width).
    pub hidden: usize,
    /// Logit scale of the cosine classifier.
    pub scale: f64,
    /// Additive cosine margin of the cosine classifier (in cosine units).
    pub margin: f64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            kind: ClassifierKind::Linear,
            hidden: 0,
            scale: 16.0,
            margin: 0.2,
        }
    }
}

/// The classifier both branches share.
pub enum Classifier {
    Linear(Linear),
    Mlp(Linear, Linear),
    Cosine { weight: Tensor, scale: f64 },
}

impl Classifier {
    pub fn new(cfg: &ClassifierConfig, dim: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg.kind {
            // The linear classifier keeps its old parameter names, so checkpoints still load.
            ClassifierKind::Linear => Classifier::Linear(linear(dim, classes, vb)?),
            ClassifierKind::Mlp => {
                let h = if cfg.hidden == 0 { dim } else { cfg.hidden };
                Classifier::Mlp(
                    linear(dim, h, vb.pp("fc1"))?,
                    linear(h, classes, vb.pp("fc2"))?,
                )
            }
            ClassifierKind::Cosine => Classifier::Cosine {
                weight: vb.get_with_hints(
                    (classes, dim),
                    "weight",
                    candle_nn::Init::Randn {
                        mean: 0.,
                        stdev: 1.0 / (dim as f64).sqrt(),
                    },
                )?,
                scale: cfg.scale,
            },
        })
    }

    /// Logits without any margin.
    ///
    /// # Shapes
    /// `(N, D)` -> `(N, K)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Classifier::Linear(l) => l.forward(x),
            Classifier::Mlp(a, b) => b.forward(&a.forward(x)?.relu()?),
            Classifier::Cosine { weight, scale } => {
                l2_normalize(x)?.matmul(&l2_normalize(weight)?.t()?)? * *scale
            }
        }
    }
}
