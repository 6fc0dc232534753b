//! Building blocks shared by the encoders: temporal convolution with non-square padding and
//! stride, point-wise convolution, batch norm, the multi-scale temporal convolution of
//! CTR-GCN / InfoGCN, and multi-head attention for the CrossGLG heads; one file per kind. Here:
//! the choice between the fused CPU kernels and the plain candle path.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// Which implementation the layers use for the operations `crossglg-kernels` covers. An
/// explicit option of every layer (set once from [`crate::EncoderConfig::kernels`]) rather than
/// process state, so two models with different choices can run side by side, as the tests
/// comparing both paths do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// The fused CPU kernels wherever every tensor is f32 on the CPU; elsewhere (a GPU) plain
    /// candle with the device forms (see [`Kernels::device_forms`]).
    #[default]
    Fused,
    /// Plain candle operations everywhere (the reference the fused kernels are tested against).
    Plain,
    /// The device forms on any device (what a GPU runs under `Fused`, selectable on the CPU to
    /// test and measure that path there), plus training batch norm from row sums
    /// (`norm::bn_train_rows`), opt-in until measured on a GPU: on the CPU it is about 30 %
    /// slower than candle_nn's in training (candle's CPU broadcasts are fast only along
    /// trailing axes).
    Portable,
}

impl Kernels {
    /// True when the fused kernels apply: chosen, and every tensor is f32 on the CPU.
    pub fn applies(self, ts: &[&Tensor]) -> bool {
        self == Self::Fused
            && ts
                .iter()
                .all(|t| t.dtype() == DType::F32 && t.device().is_cpu())
    }

    pub fn is_fused(&self) -> bool {
        *self == Self::Fused
    }

    /// True when the device forms apply: candle operations arranged as the fused kernels
    /// arrange the work (InfoGCN's heads and ST-GCN's subsets in one product and one
    /// convolution; CTR-GCN's relation convolutions on the time mean), for devices the fused
    /// kernels do not run on. Chosen (`Portable`), or
    /// `Fused` off the CPU.
    pub fn device_forms(self, ts: &[&Tensor]) -> bool {
        self == Self::Portable || (self == Self::Fused && !self.applies(ts))
    }
}

impl std::str::FromStr for Kernels {
    type Err = crate::error::UnknownName;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fused" => Ok(Self::Fused),
            "plain" => Ok(Self::Plain),
            "portable" => Ok(Self::Portable),
            _ => Err(crate::error::UnknownName {
                what: "kernels",
                value: s.into(),
                expected: "fused, plain or portable",
            }),
        }
    }
}

/// True when no tensor records an autograd graph: inference-only kernels apply.
pub fn untracked(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| !t.track_op())
}

mod attention;
mod linear;
mod norm;
mod ops;
mod temporal;

pub use attention::*;
pub use linear::*;
pub use norm::*;
pub use ops::*;
pub use temporal::*;
