//! Encoder configuration: which backbone, its blocks and widths, the InfoGCN options. Apart
//! from the encoders themselves so that they and the [`crate::encoder::Encoder`] seam both
//! depend on it without depending on each other.

use crate::error::{config_err, Result};
use crate::layers::Kernels;
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
    /// Fused CPU kernels or plain candle (a run-time choice, not part of the architecture:
    /// weights move freely between the two). Left out of written configs when fused.
    #[serde(skip_serializing_if = "Kernels::is_fused")]
    pub kernels: Kernels,
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
            kernels: Kernels::Fused,
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
