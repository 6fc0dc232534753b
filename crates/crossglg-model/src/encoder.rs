//! The plug-and-play seam: one [`Encoder`] over ST-GCN, CTR-GCN and InfoGCN.
//!
//! Every encoder maps `x: (N, C, T, V, M)` to joint features `(N·M, C_L, T_L, V)` through a
//! stem and `L` blocks. The caller drives the blocks one by one ([`Encoder::block`]) so CrossGLG
//! can read the features after block `N_pre` and pass a per-joint weight into later blocks; the
//! weight multiplies the block's features right after its graph convolution, before its
//! temporal convolution.

use crate::ctrgcn::CtrGcn;
use crate::error::{config_err, Result};
use crate::graph::Graph;
use crate::infogcn::InfoGcn;
use crate::stgcn::StGcn;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Which backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    StGcn,
    CtrGcn,
    InfoGcn,
}

impl std::str::FromStr for EncoderKind {
    type Err = crate::error::UnknownName;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "stgcn" => Ok(Self::StGcn),
            "ctrgcn" => Ok(Self::CtrGcn),
            "infogcn" => Ok(Self::InfoGcn),
            _ => Err(crate::error::UnknownName {
                what: "encoder",
                value: s.into(),
                expected: "st_gcn, ctr_gcn or info_gcn",
            }),
        }
    }
}

/// Output width and temporal stride of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub channels: usize,
    pub stride: usize,
}

/// InfoGCN-specific options (ignored by the other encoders).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfoGcnOptions {
    /// Attention heads of the self-attention graph conv (InfoGCN `n_heads`, 3).
    pub heads: usize,
    /// Input transform `I - A_outward^k` before the joint embedding (`k = 0`: identity). 1 as in
    /// the published NTU runs.
    pub k: usize,
    /// Latent noise scale: `z = mu + eps · exp(noise_ratio · logvar)` in training (0.1).
    pub noise_ratio: f64,
    /// Norm of the fixed class-wise prior means (InfoGCN `z_prior_gain`, 3).
    pub prior_gain: f64,
    /// Seed of the orthogonal prior means (they are fixed, not learned, and not stored).
    pub prior_seed: u64,
    /// Seed of the latent sampling noise.
    pub noise_seed: u64,
}

impl Default for InfoGcnOptions {
    fn default() -> Self {
        Self {
            heads: 3,
            k: 1,
            noise_ratio: 0.1,
            prior_gain: 3.0,
            prior_seed: 0,
            noise_seed: 0,
        }
    }
}

/// Configuration of an encoder. Use a preset ([`EncoderConfig::stgcn`], [`EncoderConfig::ctrgcn`],
/// [`EncoderConfig::infogcn`], [`EncoderConfig::tiny`]) and adjust fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    pub kind: EncoderKind,
    /// Coordinates per joint (3 for xyz).
    pub in_channels: usize,
    /// Persons per sample `M` (the data BN of CTR-GCN / InfoGCN normalises over `M·V·C`).
    pub num_persons: usize,
    pub blocks: Vec<BlockSpec>,
    /// Temporal kernel (9 for ST-GCN, 5 for the multi-scale TCN of CTR-GCN / InfoGCN).
    pub temporal_kernel: usize,
    /// Dilations of the multi-scale TCN (CTR-GCN / InfoGCN).
    pub dilations: Vec<usize>,
    /// ST-GCN's learnable edge-importance masks.
    pub edge_importance: bool,
    pub info: InfoGcnOptions,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self::infogcn()
    }
}

/// The ten-block layout shared by the three references: `w,w,w,w,2w/2,2w,2w,4w/2,4w,4w`.
pub fn standard_blocks(base: usize) -> Vec<BlockSpec> {
    let b = |channels, stride| BlockSpec { channels, stride };
    vec![
        b(base, 1),
        b(base, 1),
        b(base, 1),
        b(base, 1),
        b(2 * base, 2),
        b(2 * base, 1),
        b(2 * base, 1),
        b(4 * base, 2),
        b(4 * base, 1),
        b(4 * base, 1),
    ]
}

impl EncoderConfig {
    /// ST-GCN (Yan et al. 2018): 10 blocks 64…256, kernel 9, edge importance.
    pub fn stgcn() -> Self {
        Self {
            kind: EncoderKind::StGcn,
            in_channels: 3,
            num_persons: 2,
            blocks: standard_blocks(64),
            temporal_kernel: 9,
            dilations: vec![1, 2],
            edge_importance: true,
            info: InfoGcnOptions::default(),
        }
    }

    /// CTR-GCN (Chen et al. 2021): 10 blocks 64…256, multi-scale TCN kernel 5, dilations 1, 2.
    pub fn ctrgcn() -> Self {
        Self {
            kind: EncoderKind::CtrGcn,
            temporal_kernel: 5,
            edge_importance: false,
            ..Self::stgcn()
        }
    }

    /// InfoGCN (Chi et al. 2022): 10 attention blocks 64…256, multi-scale TCN kernel 5.
    pub fn infogcn() -> Self {
        Self {
            kind: EncoderKind::InfoGcn,
            ..Self::ctrgcn()
        }
    }

    /// The standard preset of `kind`.
    pub fn standard(kind: EncoderKind) -> Self {
        match kind {
            EncoderKind::StGcn => Self::stgcn(),
            EncoderKind::CtrGcn => Self::ctrgcn(),
            EncoderKind::InfoGcn => Self::infogcn(),
        }
    }

    /// A small model for CPU tests and demos: 4 blocks 16,16,32/2,32.
    pub fn tiny(kind: EncoderKind) -> Self {
        let b = |channels, stride| BlockSpec { channels, stride };
        Self {
            blocks: vec![b(16, 1), b(16, 1), b(32, 2), b(32, 1)],
            ..Self::standard(kind)
        }
    }

    /// Width of the final joint features.
    pub fn out_channels(&self) -> usize {
        self.blocks.last().map(|b| b.channels).unwrap_or(0)
    }

    pub fn validate(&self) -> Result<()> {
        if self.blocks.is_empty() {
            return config_err("encoder.blocks", "at least one block is needed");
        }
        if self.in_channels == 0 || self.num_persons == 0 {
            return config_err("encoder.in_channels / num_persons", "must be positive");
        }
        if self.temporal_kernel == 0 || self.temporal_kernel.is_multiple_of(2) {
            return config_err(
                "encoder.temporal_kernel",
                format!("{} must be odd (same padding)", self.temporal_kernel),
            );
        }
        let multi_scale = matches!(self.kind, EncoderKind::CtrGcn | EncoderKind::InfoGcn);
        for (i, b) in self.blocks.iter().enumerate() {
            if b.channels == 0 || b.stride == 0 {
                return config_err("encoder.blocks", format!("block {i}: {b:?} has a zero"));
            }
            if multi_scale && !b.channels.is_multiple_of(self.dilations.len() + 2) {
                return config_err(
                    "encoder.blocks",
                    format!(
                        "block {i}: {} channels do not split into {} temporal branches",
                        b.channels,
                        self.dilations.len() + 2
                    ),
                );
            }
            if multi_scale && b.channels < 8 {
                return config_err(
                    "encoder.blocks",
                    format!("block {i}: fewer than 8 channels"),
                );
            }
        }
        if self.kind == EncoderKind::InfoGcn && self.info.heads == 0 {
            return config_err("encoder.info.heads", "must be positive");
        }
        Ok(())
    }
}

/// One of the three backbones. All share the same driving interface.
pub enum Encoder {
    StGcn(StGcn),
    CtrGcn(CtrGcn),
    InfoGcn(InfoGcn),
}

impl Encoder {
    /// Builds the encoder; parameters live under `vb` (e.g. `encoder.l1.gcn1...`).
    pub fn new(cfg: &EncoderConfig, graph: &Graph, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        graph.validate()?;
        Ok(match cfg.kind {
            EncoderKind::StGcn => Self::StGcn(StGcn::new(cfg, graph, vb)?),
            EncoderKind::CtrGcn => Self::CtrGcn(CtrGcn::new(cfg, graph, vb)?),
            EncoderKind::InfoGcn => Self::InfoGcn(InfoGcn::new(cfg, graph, vb)?),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        match self {
            Self::StGcn(e) => &e.cfg,
            Self::CtrGcn(e) => &e.cfg,
            Self::InfoGcn(e) => &e.cfg,
        }
    }

    pub fn num_blocks(&self) -> usize {
        self.config().blocks.len()
    }

    /// Output width of block `i` (0-based).
    pub fn block_channels(&self, i: usize) -> usize {
        self.config().blocks[i].channels
    }

    pub fn out_channels(&self) -> usize {
        self.config().out_channels()
    }

    /// Data normalisation (and InfoGCN's joint embedding); persons are folded into the batch.
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `(N·M, C_0, T, V)` with `C_0 = C` (ST-GCN, CTR-GCN) or the first
    /// block's width (InfoGCN).
    pub fn stem(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let m = x.dim(4)?;
        if m != self.config().num_persons {
            candle_core::bail!(
                "input has {m} persons but the encoder was built for num_persons = {}",
                self.config().num_persons
            )
        }
        match self {
            Self::StGcn(e) => e.stem(x, train),
            Self::CtrGcn(e) => e.stem(x, train),
            Self::InfoGcn(e) => e.stem(x, train),
        }
    }

    /// Block `i` (0-based). `joint_weight`, broadcastable to `(N·M, 1, 1, V)`, multiplies the
    /// features right after the block's graph convolution.
    ///
    /// # Shapes
    /// `h: (N·M, C_{i-1}, T, V)` -> `(N·M, C_i, ceil(T / stride_i), V)`
    pub fn block(
        &self,
        i: usize,
        h: &Tensor,
        joint_weight: Option<&Tensor>,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        if i >= self.num_blocks() {
            candle_core::bail!(
                "block index {i} out of range ({} blocks)",
                self.num_blocks()
            )
        }
        match self {
            Self::StGcn(e) => e.block(i, h, joint_weight, train),
            Self::CtrGcn(e) => e.block(i, h, joint_weight, train),
            Self::InfoGcn(e) => e.block(i, h, joint_weight, train),
        }
    }

    /// The features after every block.
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `L` tensors `(N·M, C_i, T_i, V)`
    pub fn forward_blocks(&self, x: &Tensor, train: bool) -> candle_core::Result<Vec<Tensor>> {
        let mut h = self.stem(x, train)?;
        let mut out = Vec::with_capacity(self.num_blocks());
        for i in 0..self.num_blocks() {
            h = self.block(i, &h, None, train)?;
            out.push(h.clone());
        }
        Ok(out)
    }

    /// Final joint features.
    ///
    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `(N·M, C_L, T_L, V)`
    pub fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut h = self.stem(x, train)?;
        for i in 0..self.num_blocks() {
            h = self.block(i, &h, None, train)?;
        }
        Ok(h)
    }
}
