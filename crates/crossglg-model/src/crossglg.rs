//! The CrossGLG model: encoder + JID + cross-modal branch + shared classifier (METHOD.md §2).
//!
//! ```text
//! x ─► stem ─► blocks 1..N_pre ─► f_pre ─► JID ─► k_out ──┐ (V·k_out or 1+k_out)
//!                                    blocks N_pre+1..L (re-weighted after graph conv)
//!                                            │ F = joint features (N, V, C)
//!        g_s = mean_V F (InfoGCN: IB latent) │  g_c = CrossModal(text, F)
//!                      └──► shared classifier ◄──┘
//! ```

use crate::encoder::Encoder;
use crate::encoder_config::{EncoderConfig, EncoderKind};
use crate::error::{config_err, Result};
use crate::graph::Graph;
use crate::heads::{
    Classifier, ClassifierConfig, ClassifierKind, CrossModal, Jid, TextAlign, TextLogits,
    TEXT_CENTERS,
};
use crate::infogcn::{InfoBottleneck, Latent};
use crate::init::SeededVarMap;
use crate::layers::joint_features_with;
use crate::loss::{calibration_loss, cross_entropy_margin, distillation, LossParts, LossWeights};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

/// Which guidance is on (the paper's ablation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guidance {
    /// Plain encoder + classifier.
    None,
    /// Global-to-local only: JID + `L_cal`.
    G2l,
    /// Local-to-global only: cross-modal branch + `L_c`.
    L2g,
    Both,
}

impl Guidance {
    pub fn uses_jid(self) -> bool {
        matches!(self, Self::G2l | Self::Both)
    }
    pub fn uses_cross_modal(self) -> bool {
        matches!(self, Self::L2g | Self::Both)
    }
}

impl std::str::FromStr for Guidance {
    type Err = crate::error::UnknownName;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "g2l" => Ok(Self::G2l),
            "l2g" => Ok(Self::L2g),
            "both" => Ok(Self::Both),
            _ => Err(crate::error::UnknownName {
                what: "guidance",
                value: s.into(),
                expected: "none, g2l, l2g or both",
            }),
        }
    }
}

/// How `k_out` re-weights the later blocks [R].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reweight {
    /// JID is trained by `L_cal` only and does not touch the features.
    Off,
    /// Features × `V·k_out` (mean weight 1).
    Multiplicative,
    /// Features × `(1 + k_out)`.
    Residual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JidConfig {
    /// `N_pre`: JID reads the features after this many blocks (5). Clamped to `1..=L-1`.
    pub after_block: usize,
    /// Hidden width of the two-layer scorer [R].
    pub hidden: usize,
    pub reweight: Reweight,
}

impl Default for JidConfig {
    fn default() -> Self {
        Self {
            after_block: 5,
            hidden: 256,
            reweight: Reweight::Multiplicative,
        }
    }
}

/// What the local-to-global branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CrossForm {
    /// The paper's: the per-joint descriptions of the sample's own class interact with the
    /// joint features, and the shared classifier classifies the result. Its input names the
    /// class, so `L_c` can fall without the skeleton (docs/results.md).
    #[default]
    Paper,
    /// The text as the target ([`crate::heads::TextAlign`]): skeleton features scored against
    /// the descriptions of every training class; nothing in the input names the class.
    Target,
}

/// How the target form's class texts enter the common space [R, beyond the paper].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TextSide {
    /// A learned projection per level. With 5–25 training classes it can put each class's
    /// text anywhere in the common space, so what the texts say barely shapes the skeleton
    /// features (docs/results.md, "Does the text's meaning matter?").
    #[default]
    Learned,
    /// No text projection: the skeleton side is projected into the text's own space
    /// (width `text_dim`; `dim` is not used), where each text is taken relative to the
    /// training classes' mean (stored with the weights), so classes described alike must
    /// stay alike.
    Fixed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InteractionConfig {
    /// The branch's form: `paper` or `target`.
    pub form: CrossForm,
    /// Width of the frozen text embeddings (384 for all-MiniLM-L6-v2, 1536 for
    /// DeBERTa-V2-XLarge).
    pub text_dim: usize,
    /// Common width `d`.
    pub dim: usize,
    pub heads: usize,
    /// Number of interaction blocks `M`.
    pub depth: usize,
    pub mlp_ratio: usize,
    /// [R] Keep the text stream's residual across the cross-attention fusion
    /// (`t + CrossAttn(t, s)`, the default). The branch is fed the text of the sample's own
    /// class, so with the residual its classifier can read the label off the text; `false`
    /// keeps only the text-queried skeleton context (`CrossAttn(t, s)`), so `L_c` can only be
    /// lowered through the skeleton features. See docs/results.md for the measured effect.
    pub text_residual: bool,
    /// Target form: `learned` projects the texts, `fixed` keeps their own geometry.
    pub text_side: TextSide,
}

impl Default for InteractionConfig {
    fn default() -> Self {
        Self {
            form: CrossForm::Paper,
            text_dim: 384,
            dim: 256,
            heads: 4,
            depth: 2,
            mlp_ratio: 2,
            text_residual: true,
            text_side: TextSide::Learned,
        }
    }
}

/// Everything needed to build a [`CrossGlg`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossGlgConfig {
    pub encoder: EncoderConfig,
    /// Auxiliary (training) classes.
    pub num_classes: usize,
    pub guidance: Guidance,
    pub jid: JidConfig,
    pub interaction: InteractionConfig,
    /// The classifier both branches share.
    pub classifier: ClassifierConfig,
    pub loss: LossWeights,
}

impl Default for CrossGlgConfig {
    fn default() -> Self {
        Self {
            encoder: EncoderConfig::infogcn(),
            num_classes: 100,
            guidance: Guidance::Both,
            jid: JidConfig::default(),
            interaction: InteractionConfig::default(),
            classifier: ClassifierConfig::default(),
            loss: LossWeights::default(),
        }
    }
}

impl CrossGlgConfig {
    /// The standard encoder of `kind` with both guidances.
    pub fn standard(kind: EncoderKind, num_classes: usize) -> Self {
        Self {
            encoder: EncoderConfig::standard(kind),
            num_classes,
            ..Self::default()
        }
    }

    /// A tiny model for CPU tests and demos (4 blocks of width 16–32, JID after block 2,
    /// interaction width 32, one block).
    pub fn tiny(kind: EncoderKind, num_classes: usize, text_dim: usize) -> Self {
        Self {
            encoder: EncoderConfig::tiny(kind),
            num_classes,
            guidance: Guidance::Both,
            jid: JidConfig {
                after_block: 2,
                hidden: 16,
                reweight: Reweight::Multiplicative,
            },
            interaction: InteractionConfig {
                form: CrossForm::Paper,
                text_dim,
                dim: 32,
                heads: 2,
                depth: 1,
                mlp_ratio: 2,
                text_residual: true,
                text_side: TextSide::Learned,
            },
            classifier: ClassifierConfig::default(),
            loss: LossWeights::default(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.encoder.validate()?;
        if self.num_classes == 0 {
            return config_err("num_classes", "must be positive");
        }
        if self.guidance.uses_jid() && (self.jid.after_block == 0 || self.jid.hidden == 0) {
            return config_err("jid", "after_block and hidden must be positive");
        }
        let ic = &self.interaction;
        if self.guidance.uses_cross_modal() {
            if ic.text_dim == 0 || ic.dim == 0 || ic.depth == 0 || ic.mlp_ratio == 0 {
                return config_err(
                    "interaction",
                    "text_dim, dim, depth, mlp_ratio must be positive",
                );
            }
            if ic.form == CrossForm::Paper && (ic.heads == 0 || !ic.dim.is_multiple_of(ic.heads)) {
                return config_err(
                    "interaction.heads",
                    format!("width {} is not divisible by {} heads", ic.dim, ic.heads),
                );
            }
        }
        // Like the other branch keys, distillation is inert without the branch (guidance none
        // or g2l); with the paper-form branch there is nothing to distil from.
        if self.loss.distill > 0.0
            && self.guidance.uses_cross_modal()
            && ic.form == CrossForm::Paper
        {
            return config_err(
                "loss.distill",
                "distillation reads the text-target branch: set interaction.form = \"target\" (or loss.distill = 0)",
            );
        }
        if ic.text_side == TextSide::Fixed
            && self.guidance.uses_cross_modal()
            && ic.form == CrossForm::Paper
        {
            return config_err(
                "interaction.text_side",
                "a fixed text side belongs to the text-target branch: set interaction.form = \"target\" (or text_side = \"learned\")",
            );
        }
        if self.loss.distill_temperature <= 0.0 || !self.loss.distill_temperature.is_finite() {
            return config_err("loss.distill_temperature", "must be positive");
        }
        let c = &self.classifier;
        if c.kind == ClassifierKind::Cosine && (c.scale <= 0.0 || c.margin < 0.0 || c.margin >= 1.0)
        {
            return config_err("classifier", "cosine needs scale > 0 and 0 <= margin < 1");
        }
        Ok(())
    }

    /// `N_pre` after clamping to the encoder depth: `1..=L-1` (or 1 for a one-block encoder).
    pub fn effective_jid_after(&self) -> usize {
        let l = self.encoder.blocks.len();
        self.jid.after_block.clamp(1, l.saturating_sub(1).max(1))
    }
}

/// What [`CrossGlg::forward_train`] returns.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Skeleton-branch logits `(N, K)`.
    pub logits_s: Tensor,
    /// Cross-modal logits `(N, K)` when the paper-form branch is on and text was given.
    pub logits_c: Option<Tensor>,
    /// The text-target branch's class scores when it is on and class texts were given.
    pub text_logits: Option<TextLogits>,
    /// Joint importance `(N, V)` when JID is on.
    pub k_out: Option<Tensor>,
    /// `g_s`: the skeleton embedding `(N, D)` (InfoGCN: the latent `z`).
    pub embedding: Tensor,
    /// Pooled joint features `F` `(N, V, C)` of the last block.
    pub joint_features: Tensor,
    /// InfoGCN's latent (for its loss terms).
    pub latent: Option<Latent>,
}

/// Encoder + CrossGLG heads.
pub struct CrossGlg {
    cfg: CrossGlgConfig,
    encoder: Encoder,
    jid: Option<Jid>,
    jid_after: usize,
    cross: Option<CrossModal>,
    align: Option<TextAlign>,
    ib: Option<InfoBottleneck>,
    classifier: Classifier,
    num_joints: usize,
}

/// The text one training step reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepText<'a> {
    /// Paper form: the per-joint text embeddings of each sample's class, `(N, V, D_text)`.
    pub sample_local: Option<&'a Tensor>,
    /// Target form: every training class's global description, `(K, D_text)`.
    pub class_global: Option<&'a Tensor>,
    /// Target form: every training class's per-joint descriptions, `(K, V, D_text)`.
    pub class_local: Option<&'a Tensor>,
}

impl CrossGlg {
    /// Builds the model. Parameter prefixes: `encoder.*`, `jid.*`, `cross.*` (paper form),
    /// `align.*` (target form), `ib.*`, `classifier.*`.
    pub fn new(cfg: &CrossGlgConfig, graph: &Graph, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        graph.validate()?;
        let encoder = Encoder::new(&cfg.encoder, graph, vb.pp("encoder"))?;
        let jid_after = cfg.effective_jid_after();
        let jid = if cfg.guidance.uses_jid() {
            Some(Jid::new(
                encoder.block_channels(jid_after - 1),
                cfg.jid.hidden,
                vb.pp("jid"),
            )?)
        } else {
            None
        };
        let c_out = encoder.out_channels();
        let ib = if cfg.encoder.kind == EncoderKind::InfoGcn {
            Some(InfoBottleneck::new(
                c_out,
                cfg.num_classes,
                &cfg.encoder.info,
                vb.pp("ib"),
            )?)
        } else {
            None
        };
        let ic = &cfg.interaction;
        let paper = ic.form == CrossForm::Paper;
        let cross = if cfg.guidance.uses_cross_modal() && paper {
            Some(CrossModal::new(
                ic.text_dim,
                c_out,
                graph.num_joints,
                ic.dim,
                ic.heads,
                ic.depth,
                ic.mlp_ratio,
                ic.text_residual,
                c_out,
                vb.pp("cross"),
            )?)
        } else {
            None
        };
        let align = if cfg.guidance.uses_cross_modal() && !paper {
            Some(match ic.text_side {
                TextSide::Learned => {
                    TextAlign::new(c_out, c_out, ic.text_dim, ic.dim, vb.pp(ALIGN))?
                }
                TextSide::Fixed => {
                    TextAlign::new_fixed(c_out, c_out, ic.text_dim, graph.num_joints, vb.pp(ALIGN))?
                }
            })
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            encoder,
            jid,
            jid_after,
            cross,
            align,
            ib,
            classifier: Classifier::new(
                &cfg.classifier,
                c_out,
                cfg.num_classes,
                vb.pp("classifier"),
            )?,
            num_joints: graph.num_joints,
        })
    }

    pub fn config(&self) -> &CrossGlgConfig {
        &self.cfg
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Width of [`CrossGlg::embed`]'s output.
    pub fn embedding_dim(&self) -> usize {
        self.encoder.out_channels()
    }

    /// `N_pre` actually used (after clamping).
    pub fn jid_after(&self) -> usize {
        self.jid_after
    }

    /// Block features pooled over time and persons, `(N·M, C, T, V)` -> `(N, V, C)`.
    fn pooled_joints(&self, h: &Tensor, m: usize) -> candle_core::Result<Tensor> {
        joint_features_with(self.cfg.encoder.kernels, h, m)
    }

    /// Runs the skeleton path: returns final block features, `k_out`.
    fn skeleton_path(
        &self,
        x: &Tensor,
        train: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (n, _, _, v, m) = x.dims5()?;
        if v != self.num_joints {
            candle_core::bail!(
                "input has {v} joints but the model was built for a {}-joint graph",
                self.num_joints
            )
        }
        let mut h = self.encoder.stem(x, train)?;
        let mut k_out = None;
        let mut weight: Option<Tensor> = None;
        for i in 0..self.encoder.num_blocks() {
            h = self.encoder.block(i, &h, weight.as_ref(), train)?;
            if i + 1 == self.jid_after {
                if let Some(jid) = &self.jid {
                    let k = jid.forward_pooled(&self.pooled_joints(&h, m)?)?; // (N, V)
                    let w = match self.cfg.jid.reweight {
                        Reweight::Off => None,
                        Reweight::Multiplicative => Some((&k * v as f64)?),
                        Reweight::Residual => Some((&k + 1.0)?),
                    };
                    weight = match w {
                        Some(w) => Some(
                            w.unsqueeze(1)?
                                .broadcast_as((n, m, v))?
                                .contiguous()?
                                .reshape((n * m, 1, 1, v))?,
                        ),
                        None => None,
                    };
                    k_out = Some(k);
                }
            }
        }
        Ok((h, k_out))
    }

    /// Training (or eval-mode) forward of both branches, paper form: `text_local` holds the
    /// frozen per-joint text embeddings of each sample's class (see [`CrossGlg::forward_step`]).
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)`, `text_local: (N, J, D_text)` ->
    /// `logits_s, logits_c: (N, K)`, `k_out: (N, V)`, `embedding: (N, D)`
    pub fn forward_train(
        &self,
        x: &Tensor,
        text_local: Option<&Tensor>,
        train: bool,
    ) -> candle_core::Result<Outputs> {
        self.forward_step(
            x,
            &StepText {
                sample_local: text_local,
                ..Default::default()
            },
            train,
        )
    }

    /// Training (or eval-mode) forward of both branches.
    ///
    /// The local-to-global branch runs when guidance includes l2g and its text is given: the
    /// paper form reads `text.sample_local`, the target form `text.class_global` and
    /// `text.class_local`. `train` switches BatchNorm to batch statistics (and updates running
    /// stats) and samples InfoGCN's latent.
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)`, `sample_local: (N, V, D_text)`, `class_global: (K, D_text)`,
    /// `class_local: (K, V, D_text)` -> `logits_s, logits_c, text_logits: (N, K)`,
    /// `k_out: (N, V)`, `embedding: (N, D)`
    pub fn forward_step(
        &self,
        x: &Tensor,
        text: &StepText,
        train: bool,
    ) -> candle_core::Result<Outputs> {
        let m = x.dim(4)?;
        let (h, k_out) = self.skeleton_path(x, train)?;
        let f = self.pooled_joints(&h, m)?; // (N, V, C)
        let pooled = f.mean(1)?;
        let (embedding, latent) = match &self.ib {
            Some(ib) => {
                let lat = ib.forward(&pooled, train)?;
                (lat.z.clone(), Some(lat))
            }
            None => (pooled, None),
        };
        let logits_s = self.classifier.forward(&embedding)?;
        let td_want = self.cfg.interaction.text_dim;
        let logits_c = match (&self.cross, text.sample_local) {
            (Some(cross), Some(t)) => {
                let (tn, _, td) = t.dims3()?;
                if tn != x.dim(0)? || td != td_want {
                    candle_core::bail!(
                        "text_local has shape {:?}; expected ({}, J, {td_want})",
                        t.dims(),
                        x.dim(0)?
                    )
                }
                let t = t.to_dtype(f.dtype())?.detach();
                let g_c = cross.forward(&t, &f)?;
                Some(self.classifier.forward(&g_c)?)
            }
            _ => None,
        };
        let text_logits = match (&self.align, text.class_global, text.class_local) {
            (Some(align), Some(tg), Some(tl)) => {
                let k = self.cfg.num_classes;
                let (gk, gd) = tg.dims2()?;
                let (lk, _, ld) = tl.dims3()?;
                if gk != k || lk != k || gd != td_want || ld != td_want {
                    candle_core::bail!(
                        "class texts have shapes {:?} and {:?}; expected ({k}, {td_want}) and ({k}, V, {td_want})",
                        tg.dims(),
                        tl.dims()
                    )
                }
                let tg = tg.to_dtype(f.dtype())?.detach();
                let tl = tl.to_dtype(f.dtype())?.detach();
                Some(align.forward(&embedding, &f, &tg, &tl)?)
            }
            _ => None,
        };
        Ok(Outputs {
            logits_s,
            logits_c,
            text_logits,
            k_out,
            embedding,
            joint_features: f,
            latent,
        })
    }

    /// The text-target branch's cosine similarities (unscaled, global and per-joint) between
    /// skeletons and any set of class texts, for example novel classes' descriptions: zero-shot
    /// recognition, or a text prior beside the exemplar. Eval mode. `None` when the model has
    /// no text-target branch.
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)`, `class_global: (K, D_text)`, `class_local: (K, V, D_text)` ->
    /// `(N, K)` twice
    pub fn text_similarity(
        &self,
        x: &Tensor,
        class_global: &Tensor,
        class_local: &Tensor,
    ) -> candle_core::Result<Option<TextLogits>> {
        if self.align.is_none() {
            return Ok(None);
        }
        Ok(self.embed_with_text(x, class_global, class_local)?.1)
    }

    /// [`CrossGlg::embed`] and [`CrossGlg::text_similarity`] from one pass of the encoder (a
    /// described stream window needs both). The text part is `None` without the branch.
    ///
    /// # Shapes
    /// as the two: `(N, D)` and `(N, K)` twice
    pub fn embed_with_text(
        &self,
        x: &Tensor,
        class_global: &Tensor,
        class_local: &Tensor,
    ) -> candle_core::Result<(Tensor, Option<TextLogits>)> {
        let (e, f) = self.eval_features(x)?;
        let text = self.text_similarity_of_features(&e, &f, class_global, class_local)?;
        Ok((e.detach(), text))
    }

    /// [`CrossGlg::text_similarity`] from what [`CrossGlg::eval_features`] gave: features kept
    /// from earlier passes (a cohort of training samples) scored against any descriptions.
    /// `None` without the branch.
    pub fn text_similarity_of_features(
        &self,
        embedding: &Tensor,
        joints: &Tensor,
        class_global: &Tensor,
        class_local: &Tensor,
    ) -> candle_core::Result<Option<TextLogits>> {
        let Some(align) = &self.align else {
            return Ok(None);
        };
        let dt = joints.dtype();
        let out = align.cosines(
            embedding,
            joints,
            &class_global.to_dtype(dt)?,
            &class_local.to_dtype(dt)?,
        )?;
        Ok(Some(TextLogits {
            global: out.global.detach(),
            local: out.local.detach(),
        }))
    }

    /// Eval-mode embedding `(N, D)` (before any centring) and per-joint features `(N, V, C)`:
    /// what embedding and text similarity both start from.
    pub fn eval_features(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let m = x.dim(4)?;
        let (h, _) = self.skeleton_path(x, false)?;
        let f = self.pooled_joints(&h, m)?;
        let pooled = f.mean(1)?;
        let e = match &self.ib {
            Some(ib) => ib.forward(&pooled, false)?.mu,
            None => pooled,
        };
        Ok((e, f))
    }

    /// Whether the model has the text-target branch (and so [`CrossGlg::text_similarity`]).
    pub fn has_text_target(&self) -> bool {
        self.align.is_some()
    }

    /// Skeleton-only embedding for one-shot matching (eval mode; never touches text).
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `(N, D)`
    pub fn embed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.eval_features(x)?.0.detach())
    }

    /// JID's joint importance in eval mode, `None` when JID is off.
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `(N, V)`
    pub fn joint_importance(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        if self.jid.is_none() {
            return Ok(None);
        }
        let m = x.dim(4)?;
        let mut h = self.encoder.stem(x, false)?;
        for i in 0..self.jid_after {
            h = self.encoder.block(i, &h, None, false)?;
        }
        match &self.jid {
            Some(jid) => Ok(Some(
                jid.forward_pooled(&self.pooled_joints(&h, m)?)?.detach(),
            )),
            None => Ok(None),
        }
    }

    /// `L = L_s + w_cal·L_cal + w_c·L_c + encoder terms` with the config's weights.
    ///
    /// `k_gt` is required when JID is on. `labels`: u32 class indices `(N)`.
    pub fn loss(
        &self,
        out: &Outputs,
        labels: &Tensor,
        k_gt: Option<&Tensor>,
    ) -> candle_core::Result<LossParts> {
        self.loss_with(out, labels, k_gt, &self.cfg.loss)
    }

    /// [`CrossGlg::loss`] with explicit weights.
    pub fn loss_with(
        &self,
        out: &Outputs,
        labels: &Tensor,
        k_gt: Option<&Tensor>,
        w: &LossWeights,
    ) -> candle_core::Result<LossParts> {
        let c = &self.cfg.classifier;
        let margin = if c.kind == ClassifierKind::Cosine {
            c.scale * c.margin
        } else {
            0.0
        };
        let skel = cross_entropy_margin(&out.logits_s, labels, margin)?;
        let mut total = skel.clone();
        let cal = match (&out.k_out, k_gt) {
            (Some(k), Some(gt)) => Some(calibration_loss(w.cal_form, k, gt)?),
            (Some(_), None) => {
                candle_core::bail!(
                    "JID is on (guidance g2l/both) but no k_gt was given to the loss"
                )
            }
            (None, _) => None,
        };
        if let Some(c) = &cal {
            total = (total + (c * w.cal)?)?;
        }
        let cross = match (&out.logits_c, &out.text_logits) {
            (Some(l), _) => Some(cross_entropy_margin(l, labels, margin)?),
            (None, Some(t)) => Some(
                ((cross_entropy_margin(&t.global, labels, 0.0)?
                    + cross_entropy_margin(&t.local, labels, 0.0)?)?
                    * 0.5)?,
            ),
            (None, None) => None,
        };
        if let Some(c) = &cross {
            total = (total + (c * w.cross)?)?;
        }
        let distill = match (&out.text_logits, w.distill > 0.0) {
            (Some(t), true) => Some(distillation(
                &out.logits_s,
                &t.combined()?,
                w.distill_temperature,
            )?),
            _ => None,
        };
        if let Some(d) = &distill {
            total = (total + (d * w.distill)?)?;
        }
        let mut encoder = Vec::new();
        if let (Some(ib), Some(lat)) = (&self.ib, &out.latent) {
            let (mmd, l2) = ib.loss_terms(&lat.z, labels)?;
            total = (total + (&mmd * w.ib_mmd)? + (&l2 * w.ib_l2)?)?;
            encoder.push(("ib_mmd".to_string(), mmd));
            encoder.push(("ib_l2".to_string(), l2));
        }
        Ok(LossParts {
            total,
            skel,
            cal,
            cross,
            distill,
            encoder,
        })
    }
}

/// Builds a model with seeded initialisation: returns the `VarMap` holding every parameter
/// (and BatchNorm running statistics) and the model. Same `seed` ⇒ bitwise identical weights.
pub fn build_seeded(
    cfg: &CrossGlgConfig,
    graph: &Graph,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<(VarMap, CrossGlg)> {
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, seed, dtype, device);
    let model = CrossGlg::new(cfg, graph, vb)?;
    Ok((varmap, model))
}

/// The model of `varmap` for inference: the same structure over detached views of its tensors.
/// Operations on it record no autograd graph, which is candle's counterpart of PyTorch's
/// `no_grad`: each intermediate is freed as soon as the next layer has used it, instead of
/// living until the output is dropped. The weights share storage with `varmap`, but candle_nn's
/// `BatchNorm` copies running statistics that are not variables, so make the copy after
/// training.
pub fn frozen(cfg: &CrossGlgConfig, graph: &Graph, varmap: &VarMap) -> Result<CrossGlg> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let Some(first) = data.values().next() else {
        return Err(candle_core::Error::Msg("frozen: the VarMap is empty".into()).into());
    };
    let (dtype, device) = (first.dtype(), first.device().clone());
    let tensors = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    drop(data);
    CrossGlg::new(
        cfg,
        graph,
        VarBuilder::from_tensors(tensors, dtype, &device),
    )
}

/// True for values stored as vars but never trained: BatchNorm running statistics and the
/// fixed text side's centres.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || TEXT_CENTERS.iter().any(|c| name.ends_with(c))
}

/// The text-target branch's parameter prefix.
const ALIGN: &str = "align";

/// Stores the training classes' mean texts as the centres of a fixed text side
/// (`model.interaction.text_side = "fixed"`); returns false, storing nothing, for a model
/// without one. Call once after building, with the texts of the training classes: novel
/// classes' texts are later taken relative to the same centres.
///
/// # Shapes
/// `class_global: (K, D)`, `class_local: (K, V, D)`
pub fn set_text_centers(
    varmap: &VarMap,
    class_global: &Tensor,
    class_local: &Tensor,
) -> candle_core::Result<bool> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let [g, l] = TEXT_CENTERS.map(|c| data.get(&format!("{ALIGN}.{c}")));
    let (Some(g), Some(l)) = (g, l) else {
        return Ok(false);
    };
    let mean = |t: &Tensor, var: &candle_core::Var| {
        t.to_device(var.device())?
            .to_dtype(var.dtype())?
            .mean(0)?
            .contiguous()
    };
    g.set(&mean(class_global, g)?)?;
    l.set(&mean(class_local, l)?)?;
    Ok(true)
}

/// The trainable variables of `varmap` (everything but the buffers of [`is_buffer`]), sorted
/// by name so optimiser state lines up across runs.
pub fn trainable_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut v: Vec<(String, candle_core::Var)> = data
        .iter()
        .filter(|(k, _)| !is_buffer(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Number of trainable scalars in `varmap` whose name starts with `prefix` ("" for all).
pub fn param_count(varmap: &VarMap, prefix: &str) -> usize {
    trainable_vars(varmap)
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.elem_count())
        .sum()
}
