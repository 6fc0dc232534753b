//! The plug-and-play seam: one [`Encoder`] over ST-GCN, CTR-GCN and InfoGCN.
//!
//! Every encoder maps `x: (N, C, T, V, M)` to joint features `(N·M, C_L, T_L, V)` through a
//! stem and `L` blocks. The caller drives the blocks one by one ([`Encoder::block`]) so CrossGLG
//! can read the features after block `N_pre` and pass a per-joint weight into later blocks; the
//! weight multiplies the block's features right after its graph convolution, before its
//! temporal convolution.

use crate::ctrgcn::CtrGcn;
use crate::encoder_config::{EncoderConfig, EncoderKind};
use crate::error::Result;
use crate::graph::Graph;
use crate::infogcn::InfoGcn;
use crate::stgcn::StGcn;
use candle_core::Tensor;
use candle_nn::VarBuilder;

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
