//! The CrossGLG model: encoder + JID + cross-modal branch + shared classifier (METHOD.md §2).
//!
//! ```text
//! x ─► stem ─► blocks 1..N_pre ─► f_pre ─► JID ─► k_out ──┐ (V·k_out or 1+k_out)
//!                                    blocks N_pre+1..L (re-weighted after graph conv)
//!                                            │ F = joint features (N, V, C)
//!        g_s = mean_V F (InfoGCN: IB latent) │  g_c = CrossModal(text, F)
//!                      └──► shared classifier ◄──┘
//! ```

use crate::encoder::{Encoder, EncoderConfig, EncoderKind};
use crate::error::{config_err, Result};
use crate::graph::Graph;
use crate::heads::{CrossModal, Jid};
use crate::infogcn::{InfoBottleneck, Latent};
use crate::init::SeededVarMap;
use crate::layers::Linear;
use crate::layers::{joint_features, linear};
use crate::loss::{calibration, cross_entropy, LossParts, LossWeights};
use candle_core::{DType, Device, Module, Tensor};
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
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "g2l" => Ok(Self::G2l),
            "l2g" => Ok(Self::L2g),
            "both" => Ok(Self::Both),
            _ => Err(format!(
                "unknown guidance {s:?}; expected none, g2l, l2g or both"
            )),
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InteractionConfig {
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
}

impl Default for InteractionConfig {
    fn default() -> Self {
        Self {
            text_dim: 384,
            dim: 256,
            heads: 4,
            depth: 2,
            mlp_ratio: 2,
            text_residual: true,
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
                text_dim,
                dim: 32,
                heads: 2,
                depth: 1,
                mlp_ratio: 2,
                text_residual: true,
            },
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
            if ic.heads == 0 || !ic.dim.is_multiple_of(ic.heads) {
                return config_err(
                    "interaction.heads",
                    format!("width {} is not divisible by {} heads", ic.dim, ic.heads),
                );
            }
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
    /// Cross-modal logits `(N, K)` when the branch is on and text was given.
    pub logits_c: Option<Tensor>,
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
    ib: Option<InfoBottleneck>,
    classifier: Linear,
    num_joints: usize,
}

impl CrossGlg {
    /// Builds the model. Parameter prefixes: `encoder.*`, `jid.*`, `cross.*`, `ib.*`,
    /// `classifier.*`.
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
        let cross = if cfg.guidance.uses_cross_modal() {
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
        Ok(Self {
            cfg: cfg.clone(),
            encoder,
            jid,
            jid_after,
            cross,
            ib,
            classifier: linear(c_out, cfg.num_classes, vb.pp("classifier"))?,
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
                    let k = jid.forward(&h, m)?; // (N, V)
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

    /// Training (or eval-mode) forward of both branches.
    ///
    /// `text_local`: the frozen per-joint text embeddings of each sample's class; the
    /// cross-modal branch runs only when guidance includes l2g and this is given.
    /// `train` switches BatchNorm to batch statistics (and updates running stats) and samples
    /// InfoGCN's latent.
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
        let m = x.dim(4)?;
        let (h, k_out) = self.skeleton_path(x, train)?;
        let f = joint_features(&h, m)?; // (N, V, C)
        let pooled = f.mean(1)?;
        let (embedding, latent) = match &self.ib {
            Some(ib) => {
                let lat = ib.forward(&pooled, train)?;
                (lat.z.clone(), Some(lat))
            }
            None => (pooled, None),
        };
        let logits_s = self.classifier.forward(&embedding)?;
        let logits_c = match (&self.cross, text_local) {
            (Some(cross), Some(text)) => {
                let (tn, _, td) = text.dims3()?;
                if tn != x.dim(0)? || td != self.cfg.interaction.text_dim {
                    candle_core::bail!(
                        "text_local has shape {:?}; expected ({}, J, {})",
                        text.dims(),
                        x.dim(0)?,
                        self.cfg.interaction.text_dim
                    )
                }
                let text = text.to_dtype(f.dtype())?.detach();
                let g_c = cross.forward(&text, &f)?;
                Some(self.classifier.forward(&g_c)?)
            }
            _ => None,
        };
        Ok(Outputs {
            logits_s,
            logits_c,
            k_out,
            embedding,
            joint_features: f,
            latent,
        })
    }

    /// Skeleton-only embedding for one-shot matching (eval mode; never touches text).
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `(N, D)`
    pub fn embed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let m = x.dim(4)?;
        let (h, _) = self.skeleton_path(x, false)?;
        let pooled = joint_features(&h, m)?.mean(1)?;
        let e = match &self.ib {
            Some(ib) => ib.forward(&pooled, false)?.mu,
            None => pooled,
        };
        Ok(e.detach())
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
            Some(jid) => Ok(Some(jid.forward(&h, m)?.detach())),
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
        let skel = cross_entropy(&out.logits_s, labels)?;
        let mut total = skel.clone();
        let cal = match (&out.k_out, k_gt) {
            (Some(k), Some(gt)) => Some(calibration(k, gt)?),
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
        let cross = match &out.logits_c {
            Some(l) => Some(cross_entropy(l, labels)?),
            None => None,
        };
        if let Some(c) = &cross {
            total = (total + (c * w.cross)?)?;
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

/// True for BatchNorm running statistics (stored as vars, never trained).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// The trainable variables of `varmap` (everything but BatchNorm running statistics), sorted
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
