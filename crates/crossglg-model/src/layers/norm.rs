//! Batch norm (with the fused `act(bn(x) + residual)` path and BN folding) and layer norm.

use super::*;
use candle_core::{Module, ModuleT, Result, Tensor, Var, D};
use candle_nn::{BatchNorm, BatchNormConfig, Init, VarBuilder};

/// `act(bn(x) [+ residual])` with `act` = ReLU when `relu`. In training mode on f32 CPU
/// tensors this is one fused kernel that also updates the layer's running statistics in place
/// (same buffers, same PyTorch semantics as `BatchNorm::forward_t`); in eval mode one fused
/// affine pass; otherwise plain candle.
pub fn bn_act(
    k: Kernels,
    bn: &BatchNorm,
    x: &Tensor,
    residual: Option<&Tensor>,
    relu: bool,
    train: bool,
) -> Result<Tensor> {
    if train {
        if let Some((w, b)) = bn.weight_and_bias() {
            let mut all = vec![x, w, b];
            all.extend(residual);
            if k.applies(&all) {
                let (y, stats) =
                    crossglg_kernels::batch_norm_act(x, w, b, residual, bn.eps(), relu)?;
                update_running(bn, &stats)?;
                return Ok(y);
            }
        }
    }
    if !train {
        if let Some((w, b)) = bn.weight_and_bias() {
            let mut all = vec![x, w, b];
            all.extend(residual);
            if k.applies(&all) {
                // Inference: BN folded into one per-channel affine map, fused with the residual
                // add and the ReLU (one pass instead of four).
                let (scale, shift) = bn_affine(bn, w, b)?;
                return crossglg_kernels::channel_affine_act(x, &scale, &shift, residual, relu);
            }
        }
    }
    let y = if train && k == Kernels::Portable && x.rank() >= 2 {
        bn_train_rows(bn, x)?
    } else {
        bn.forward_t(x, train)?
    };
    let y = add_opt(y, residual.cloned())?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Several batch norms side by side, one per part of a channel concatenation (a multi-scale
/// TCN's branches), applied in training as one fused kernel over all their channels: equal to
/// each norm applied to its own part, since batch norm is per channel. The running statistics
/// of each norm are updated from its channels.
///
/// One norm over the whole output leaves the residual whole: per-part norms take channel slices
/// of it, and each slice's gradient comes back through candle's `narrow` as a zero-padded copy
/// of the whole residual, added into the others.
pub(crate) struct PartsNorm<'a> {
    bns: Vec<&'a BatchNorm>,
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl<'a> PartsNorm<'a> {
    /// `None` where the fused kernel does not apply (then the caller keeps one [`bn_act`] per
    /// part); decided before the parts are computed, so no work is done twice.
    pub(crate) fn new(
        k: Kernels,
        bns: Vec<&'a BatchNorm>,
        x: &Tensor,
        residual: Option<&Tensor>,
    ) -> Result<Option<Self>> {
        let Some(first) = bns.first() else {
            return Ok(None);
        };
        let (eps, momentum) = (first.eps(), first.momentum());
        let mut gammas = Vec::with_capacity(bns.len());
        let mut betas = Vec::with_capacity(bns.len());
        for bn in &bns {
            let Some((w, b)) = bn.weight_and_bias() else {
                return Ok(None);
            };
            if bn.eps() != eps || bn.momentum() != momentum {
                return Ok(None);
            }
            gammas.push(w.clone());
            betas.push(b.clone());
        }
        let mut all: Vec<&Tensor> = gammas.iter().chain(&betas).collect();
        all.push(x);
        all.extend(residual);
        if !k.applies(&all) {
            return Ok(None);
        }
        Ok(Some(Self {
            bns,
            gamma: Tensor::cat(&gammas, 0)?,
            beta: Tensor::cat(&betas, 0)?,
            eps,
        }))
    }

    /// `act(bn(cat(xs, 1)) [+ residual])`, `xs` one part per norm, in order.
    pub(crate) fn forward(
        &self,
        xs: &[Tensor],
        residual: Option<&Tensor>,
        relu: bool,
    ) -> Result<Tensor> {
        if xs.len() != self.bns.len() {
            candle_core::bail!(
                "batch norm over parts: {} parts for {} norms",
                xs.len(),
                self.bns.len()
            )
        }
        for (x, bn) in xs.iter().zip(&self.bns) {
            if x.rank() < 2 || x.dim(1)? != bn.running_mean().dim(0)? {
                candle_core::bail!(
                    "batch norm over parts: a part of shape {:?} for a norm of {} channels",
                    x.dims(),
                    bn.running_mean().dim(0)?
                )
            }
        }
        let x = Tensor::cat(xs, 1)?;
        let (y, stats) = crossglg_kernels::batch_norm_act(
            &x,
            &self.gamma,
            &self.beta,
            residual,
            self.eps,
            relu,
        )?;
        let mut off = 0;
        for bn in &self.bns {
            let c = bn.running_mean().dim(0)?;
            let part = crossglg_kernels::BatchStats {
                mean: stats.mean[off..off + c].to_vec(),
                var: stats.var[off..off + c].to_vec(),
                count: stats.count,
            };
            update_running(bn, &part)?;
            off += c;
        }
        Ok(y)
    }
}

/// Folds a batch's statistics into `bn`'s running statistics, in place: they are `Var`s of the
/// VarMap, and `from_tensor` shares their storage.
fn update_running(bn: &BatchNorm, stats: &crossglg_kernels::BatchStats) -> Result<()> {
    let rm = Var::from_tensor(bn.running_mean())?;
    let rv = Var::from_tensor(bn.running_var())?;
    stats.update_running(&rm, &rv, bn.momentum())
}

/// Training-mode batch norm as candle_nn's `forward_t(x, true)` computes it (normalised with
/// the biased batch variance; running statistics updated with momentum and the unbiased one),
/// written for GPUs (`Kernels::Portable`, opt-in until measured): the statistics come from sums over
/// each (sample, channel) row, `N·C` contiguous reductions that a GPU runs side by side, then
/// over the batch, where candle_nn transposes `x` to `(C, N·T·V)` (a full copy each way) and
/// reduces `C` long rows, one GPU block each.
pub fn bn_train_rows(bn: &BatchNorm, x: &Tensor) -> Result<Tensor> {
    let (n, c) = (x.dim(0)?, x.dim(1)?);
    let m = x.elem_count() / (n * c).max(1);
    let count = (n * m) as f64;
    if count < 2.0 {
        candle_core::bail!("batch norm in training needs more than one value per channel");
    }
    let xr = x.reshape((n, c, m))?;
    let mean = (xr.sum_keepdim(2)?.sum_keepdim(0)? / count)?;
    let xc = xr.broadcast_sub(&mean)?;
    let var = (xc.sqr()?.sum_keepdim(2)?.sum_keepdim(0)? / count)?;
    let mom = bn.momentum();
    let rm = Var::from_tensor(bn.running_mean())?;
    let rv = Var::from_tensor(bn.running_var())?;
    rm.set(&((rm.as_tensor().detach() * (1.0 - mom))? + (mean.detach().flatten_all()? * mom)?)?)?;
    rv.set(
        &((rv.as_tensor().detach() * (1.0 - mom))?
            + (var.detach().flatten_all()? * (mom * count / (count - 1.0)))?)?,
    )?;
    let y = xc.broadcast_div(&(var + bn.eps())?.sqrt()?)?;
    let y = match bn.weight_and_bias() {
        Some((w, b)) => y
            .broadcast_mul(&w.reshape((1, c, 1))?)?
            .broadcast_add(&b.reshape((1, c, 1))?)?,
        None => y,
    };
    y.reshape(x.shape())
}

/// Batch norm's inference map as per-channel `(scale, shift)`: `bn(x) = scale·x + shift`.
/// candle_nn keeps the running statistics as `Var`s, which always "track" gradients; they are
/// constants here, hence the detach.
pub(crate) fn bn_affine(bn: &BatchNorm, w: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let var = bn.running_var().detach();
    let scale = (w / var.affine(1.0, bn.eps())?.sqrt()?)?;
    let shift = (b - (bn.running_mean().detach() * &scale)?)?;
    Ok((scale, shift))
}

/// A batch norm after a convolution folded into it: `w: (C_out, ...)` with every output
/// channel's weights times the BN scale, and the bias `b·scale + shift` (`shift` alone without
/// a conv bias). `gb` is the BN's affine weight and bias.
pub(crate) fn fold_bn(
    bn: &BatchNorm,
    (g, beta): (&Tensor, &Tensor),
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (scale, shift) = bn_affine(bn, g, beta)?;
    let mut shape = vec![1; w.rank()];
    shape[0] = scale.dim(0)?;
    let w = w.broadcast_mul(&scale.reshape(shape)?)?;
    let b = match b {
        Some(b) => ((b * &scale)? + shift)?,
        None => shift,
    };
    Ok((w, b))
}

/// Channels `offset..offset + C` of a residual, `C` the batch norm's width (a branch's share of
/// a block residual).
pub(crate) fn residual_slice(
    residual: Option<(&Tensor, usize)>,
    bn: &BatchNorm,
) -> Result<Option<Tensor>> {
    let c = bn.running_mean().dim(0)?;
    residual.map(|(r, off)| r.narrow(1, off, c)).transpose()
}

/// `nn.BatchNorm` with PyTorch's defaults (eps 1e-5, momentum 0.1), weight initialised to
/// `gamma` (the GCN references use 1, and 1e-6 for the last norm of a graph conv).
pub fn batch_norm(c: usize, gamma: f64, vb: VarBuilder) -> Result<BatchNorm> {
    let running_mean = vb.get_with_hints(c, "running_mean", Init::Const(0.))?;
    let running_var = vb.get_with_hints(c, "running_var", Init::Const(1.))?;
    let weight = vb.get_with_hints(c, "weight", Init::Const(gamma))?;
    let bias = vb.get_with_hints(c, "bias", Init::Const(0.))?;
    let cfg = BatchNormConfig::default();
    BatchNorm::new(c, running_mean, running_var, weight, bias, cfg.eps)
}

/// Layer norm over the last dimension written with differentiable primitives (candle-nn's
/// `LayerNorm` dispatches contiguous inputs to a fused op that has no backward pass).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.))?,
            eps: 1e-5,
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }
}

impl Module for LayerNorm {
    /// # Shapes
    /// `(..., D)` -> `(..., D)`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d: Vec<f32> = (a - b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        d.iter().fold(0f32, |m, x| m.max(x.abs()))
    }

    /// The row-sum form against candle_nn's: outputs, running statistics and gradients to the
    /// input, weight and bias (two steps, so the second uses updated running statistics).
    #[test]
    fn row_sum_batch_norm_matches_candle_nn() {
        let dev = Device::Cpu;
        let (vm_a, vm_b) = (VarMap::new(), VarMap::new());
        let a = batch_norm(6, 1.0, VarBuilder::from_varmap(&vm_a, DType::F32, &dev)).unwrap();
        let b = batch_norm(6, 1.0, VarBuilder::from_varmap(&vm_b, DType::F32, &dev)).unwrap();
        for vm in [&vm_a, &vm_b] {
            // a non-trivial affine part, the same in both
            for (name, var) in vm.data().lock().unwrap().iter() {
                if name == "weight" || name == "bias" {
                    let v: Vec<f32> = (0..6).map(|i| 0.5 + 0.1 * i as f32).collect();
                    var.set(&Tensor::new(v.as_slice(), &dev).unwrap()).unwrap();
                }
            }
        }
        for step in 0..2 {
            let x = Var::from_tensor(
                &(Tensor::randn(0f32, 2.0, (4, 6, 5, 3), &dev).unwrap() + step as f64).unwrap(),
            )
            .unwrap();
            let probe = Tensor::randn(0f32, 1.0, (4, 6, 5, 3), &dev).unwrap();
            let ya = a.forward_t(x.as_tensor(), true).unwrap();
            let yb = bn_train_rows(&b, x.as_tensor()).unwrap();
            assert!(max_diff(&ya, &yb) < 1e-5, "values {}", max_diff(&ya, &yb));
            assert!(max_diff(a.running_mean(), b.running_mean()) < 1e-6);
            assert!(max_diff(a.running_var(), b.running_var()) < 1e-5);
            let ga = (ya * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gb = (yb * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (wa, ba) = a.weight_and_bias().unwrap();
            let (wb, bb) = b.weight_and_bias().unwrap();
            for (ta, tb) in [(x.as_tensor(), x.as_tensor()), (wa, wb), (ba, bb)] {
                let d = max_diff(ga.get(ta).unwrap(), gb.get(tb).unwrap());
                assert!(d < 1e-4, "gradient {d}");
            }
        }
    }
}
