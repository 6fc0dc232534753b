//! The linear layer with the project's initialisation.

use crate::init::LINEAR_INIT;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// A linear layer with Kaiming-normal weights and zero bias.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((out_dim, in_dim), "weight", LINEAR_INIT)?;
    let b = vb.get_with_hints(out_dim, "bias", Init::Const(0.))?;
    Ok(Linear(candle_nn::Linear::new(w, Some(b))))
}

/// `candle_nn::Linear` applied to the last dimension with all leading dimensions folded into
/// one: a single matrix product. On 3-D/4-D input candle_nn runs one small product per
/// leading index against a broadcast weight, and its backward pass then sums the weight
/// gradient over all of them with a strided reduction (InfoGCN's attention projections have
/// `N·T` of them).
#[derive(Debug, Clone)]
pub struct Linear(candle_nn::Linear);

impl Linear {
    /// `(D_out, D_in)`
    pub fn weight(&self) -> &Tensor {
        self.0.weight()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.0.bias()
    }
}

impl Module for Linear {
    /// # Shapes
    /// `(..., D_in)` -> `(..., D_out)`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() <= 2 {
            return self.0.forward(x);
        }
        let (lead, d_in) = dims.split_at(dims.len() - 1);
        let y = self
            .0
            .forward(&x.reshape((lead.iter().product::<usize>(), d_in[0]))?)?;
        let mut shape = lead.to_vec();
        shape.push(y.dim(1)?);
        y.reshape(shape)
    }
}
