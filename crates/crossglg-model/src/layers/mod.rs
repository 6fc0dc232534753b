//! Building blocks shared by the encoders: temporal convolution with non-square padding and
//! stride, point-wise convolution, batch norm, the multi-scale temporal convolution of
//! CTR-GCN / InfoGCN, and multi-head attention for the CrossGLG heads; one file per kind. Here:
//! the switch between the fused CPU kernels and the plain candle path.

use candle_core::{DType, Tensor};
use std::cell::Cell;

thread_local! {
    /// Per thread so tests can compare both paths in parallel; starts from `CROSSGLG_PLAIN`.
    static FUSED: Cell<bool> = Cell::new(
        std::env::var("CROSSGLG_PLAIN").map_or(true, |v| v.is_empty() || v == "0"),
    );
}

/// Turns the fused CPU kernels (`crossglg-kernels`) on or off for the calling thread. They are
/// on by default unless the environment variable `CROSSGLG_PLAIN` is set to a non-empty value
/// other than `0`. Either way they are only used for f32 tensors on the CPU; everything else
/// takes the plain candle path.
pub fn set_fused(on: bool) {
    FUSED.with(|f| f.set(on));
}

/// Whether the fused CPU kernels are enabled on the calling thread (see [`set_fused`]).
pub fn fused_enabled() -> bool {
    FUSED.with(|f| f.get())
}

/// True when the fused kernels apply: enabled, and every tensor is f32 on the CPU.
pub fn use_fused(ts: &[&Tensor]) -> bool {
    fused_enabled()
        && ts
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.device().is_cpu())
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
