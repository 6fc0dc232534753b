//! Graph and person operations shared by the encoders: aggregation over an adjacency, 1×1
//! convolution, residual connections, per-joint weighting, person averaging.

use super::*;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Mean over the persons folded into the batch: `(N·M, ...)` -> `(N, ...)`.
pub fn mean_persons(x: &Tensor, m: usize) -> Result<Tensor> {
    let dims = x.dims();
    let nm = dims[0];
    if m == 0 || !nm.is_multiple_of(m) {
        candle_core::bail!("batch of {nm} is not a multiple of {m} persons")
    }
    let mut shape = vec![nm / m, m];
    shape.extend_from_slice(&dims[1..]);
    x.reshape(shape)?.mean(1)
}

/// Pools joint features over time and persons: `(N·M, C, T, V)` -> `(N, V, C)`.
pub fn joint_features(x: &Tensor, m: usize) -> Result<Tensor> {
    joint_features_with(Kernels::Plain, x, m)
}

/// [`joint_features`] with the time mean as the fused kernel where it applies (candle's mean
/// over a middle axis is a strided reduction on one thread).
pub fn joint_features_with(k: Kernels, x: &Tensor, m: usize) -> Result<Tensor> {
    let pooled = if k.applies(&[x]) && x.rank() == 4 {
        crossglg_kernels::time_mean(x)?.squeeze(2)?
    } else {
        x.mean(2)?
    }; // (N·M, C, V)
    mean_persons(&pooled, m)?.transpose(1, 2)?.contiguous()
}

/// 1×1 convolution with a plain `(C_out, C_in)` weight.
///
/// # Shapes
/// `x: (N, C_in, T, V)`, `w: (C_out, C_in)`, `b: (C_out)` -> `(N, C_out, T, V)`
pub fn conv1x1(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (n, c_in, t, v) = x.dims4()?;
    let c_out = w.dim(0)?;
    let y = w
        .broadcast_left(n)?
        .matmul(&x.contiguous()?.reshape((n, c_in, t * v))?)?;
    let y = match b {
        Some(b) => y.broadcast_add(&b.reshape((1, c_out, 1))?)?,
        None => y,
    };
    y.reshape((n, c_out, t, v))
}

/// Graph aggregation `out[u] = Σ_v A[u][v] · x[v]` over the joint axis.
///
/// # Shapes
/// `x: (N, C, T, V)`, `a: (V, V)` -> `(N, C, T, V)`
pub fn aggregate(x: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (n, c, t, v) = x.dims4()?;
    x.contiguous()?
        .reshape((n * c * t, v))?
        .matmul(&a.t()?)?
        .reshape((n, c, t, v))
}

/// Residual path of a GCN block.
pub enum Residual {
    Zero,
    Identity,
    Proj(ConvBn),
}

impl Residual {
    /// `none` when the block has no residual, identity when shapes match, else 1×1 conv + BN
    /// with the block's temporal stride.
    pub fn new(
        enabled: bool,
        c_in: usize,
        c_out: usize,
        stride: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(if !enabled {
            Self::Zero
        } else if c_in == c_out && stride == 1 {
            Self::Identity
        } else {
            Self::Proj(ConvBn::new(c_in, c_out, 1, stride, 1, kernels, vb)?)
        })
    }

    /// Returns `None` for the zero residual so callers skip the add.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Option<Tensor>> {
        Ok(match self {
            Self::Zero => None,
            Self::Identity => Some(x.clone()),
            Self::Proj(p) => Some(p.forward(x, train)?),
        })
    }
}

/// The sum of tensors produced one at a time (per partition, subset or head on the plain
/// paths); an error when there are none.
pub fn sum_each(ts: impl IntoIterator<Item = Result<Tensor>>) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for t in ts {
        let t = t?;
        sum = Some(match sum {
            Some(s) => (s + t)?,
            None => t,
        });
    }
    sum.ok_or_else(|| candle_core::Error::Msg("sum of no tensors".into()))
}

/// Features scaled per joint by CrossGLG's joint importance: `y · w` with `w: (N, 1, 1, V)`
/// broadcast over channels and frames (one fused op with a one-pass backward on the CPU).
///
/// # Shapes
/// `y: (N, C, T, V)`, `w: (N, 1, 1, V)` -> `(N, C, T, V)`
pub fn joint_weight_mul(k: Kernels, y: &Tensor, w: &Tensor) -> Result<Tensor> {
    if k.applies(&[y, w]) {
        return crossglg_kernels::joint_scale(y, w);
    }
    y.broadcast_mul(w)
}

/// `y + r` when a residual exists.
pub fn add_opt(y: Tensor, r: Option<Tensor>) -> Result<Tensor> {
    match r {
        Some(r) => y + r,
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn aggregate_follows_a_u_v() {
        // out[u] = Σ_v A[u][v] x[v]
        let x = Tensor::new(&[1f32, 10., 100.], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 3))
            .unwrap();
        let a = Tensor::new(&[[0f32, 1., 0.], [0., 0., 1.], [1., 0., 0.]], &Device::Cpu).unwrap();
        let y: Vec<f32> = aggregate(&x, &a)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, vec![10., 100., 1.]);
    }
}
