//! Multi-head attention for the CrossGLG heads, and a softmax over the last axis.

use super::*;
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// Multi-head attention with separate query and key/value inputs (pre-norm is done by the
/// caller).
pub struct MultiHeadAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
}

impl MultiHeadAttention {
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("attention width {dim} is not divisible by {heads} heads")
        }
        Ok(Self {
            q: linear(dim, dim, vb.pp("q"))?,
            k: linear(dim, dim, vb.pp("k"))?,
            v: linear(dim, dim, vb.pp("v"))?,
            o: linear(dim, dim, vb.pp("o"))?,
            heads,
        })
    }

    /// # Shapes
    /// `query: (N, L, D)`, `context: (N, S, D)` -> `(N, L, D)`
    pub fn forward(&self, query: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (n, l, d) = query.dims3()?;
        let s = context.dim(1)?;
        let h = self.heads;
        let hd = d / h;
        let split = |t: Tensor, len: usize| -> Result<Tensor> {
            t.reshape((n, len, h, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.q.forward(query)?, l)?;
        let k = split(self.k.forward(context)?, s)?;
        let v = split(self.v.forward(context)?, s)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let att = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * scale)?;
        let att = softmax_last(&att)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((n, l, d))?;
        self.o.forward(&y)
    }
}

/// Differentiable softmax over the last dimension, computed in at least f32 (candle-nn's
/// `softmax_last_dim` has no backward pass).
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let dt = x.dtype();
    if dt == DType::F16 || dt == DType::BF16 {
        candle_nn::ops::softmax(&x.to_dtype(DType::F32)?, D::Minus1)?.to_dtype(dt)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}
