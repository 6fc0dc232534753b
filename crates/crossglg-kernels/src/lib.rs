//! Fused CPU kernels for the GCN encoders, written as candle `CustomOp`s with backward passes,
//! plus glibc allocator tuning.
//!
//! Why: on CPU, candle spends most of a GCN training step on allocation churn and unfused
//! element-wise passes and layout copies, not in matrix products (see `docs/performance.md`).
//! Each op here replaces a chain of candle ops by one pass (or a handful of `gemm` calls) and
//! keeps no intermediate tensor alive in the autograd graph.
//!
//! All ops are f32 and CPU-only; other dtypes/devices return an error naming the op.
//! Every op is tested against the plain candle composition (values and gradients) in `tests/`.

mod agg;
mod alloc;
mod attn;
mod bn;
mod fpmode;
mod graph;
mod mm;
mod points;
mod pointwise;
mod pool;
mod reduce;
mod rel;
mod scale;
mod small;
mod tconv;
mod toom;
mod util;
mod winograd;

pub use agg::{head_aggregate, head_aggregate_conv_infer, subset_aggregate};
pub use alloc::{tune_allocator, tune_allocator_with, AllocatorTuning};
pub use attn::joint_attention;
pub use bn::{batch_norm_act, channel_affine_act, BatchStats, FusedBatchNorm};
pub use fpmode::{
    denormal_free_pool, denormals_flushed_on_this_thread, flush_denormals,
    flush_denormals_on_this_thread, FlushDenormals,
};
pub use graph::{graph_conv, graph_conv_infer};
pub use pointwise::pointwise_split_infer;
pub use pool::max_pool_time3;
pub use reduce::time_mean;
pub use rel::{pairwise_tanh, subset_weight_mm};
pub use scale::{channel_joint_bias, joint_scale};
pub use small::{cpu_features, gemm_path, simd_path};
pub use tconv::{temporal_conv, temporal_conv_bias, temporal_conv_dilated, temporal_conv_infer};
pub use toom::temporal_conv_toom;
pub use winograd::temporal_conv_winograd;
