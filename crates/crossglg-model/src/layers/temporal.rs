//! Temporal convolution with non-square padding and stride, point-wise convolution, conv + BN,
//! temporal max pooling, and the multi-scale temporal convolution of CTR-GCN / InfoGCN.

use super::*;
use crate::init::CONV_INIT;
use candle_core::{Result, Tensor};
use candle_nn::{BatchNorm, Init, VarBuilder};

/// Splits the time axis of `(N, C, T, V)` into its `stride` phases: phase `r` holds frames
/// `r, r + stride, r + 2·stride, …` (zero-padded to `ceil(T / stride)` frames). Uses a reshape
/// instead of `index_select`, which needs contiguous input and is slower.
pub fn time_phases(x: &Tensor, stride: usize) -> Result<Vec<Tensor>> {
    if stride == 1 {
        return Ok(vec![x.clone()]);
    }
    let (n, c, t, v) = x.dims4()?;
    let tp = t.div_ceil(stride);
    let x = x.pad_with_zeros(2, 0, tp * stride - t)?.contiguous()?;
    let r = x.reshape((n, c, tp, stride, v))?;
    (0..stride).map(|i| r.narrow(3, i, 1)?.squeeze(3)).collect()
}

/// Keeps every `stride`-th frame of `(N, C, T, V)` starting at 0 (`ceil(T / stride)` frames).
pub fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    Ok(time_phases(x, stride)?.swap_remove(0))
}

/// `nn.Conv2d(c_in, c_out, kernel_size=(k, 1), stride=(s, 1), padding=(p, 0), dilation=(d, 1))`
/// over `(N, C, T, V)` with "same" padding `p = d·(k-1)/2`, written as unfold + matmul (candle's
/// conv2d has square padding and stride; unfold + matmul was also the faster CPU path).
/// The weight keeps PyTorch's `(c_out, c_in, k, 1)` shape so checkpoints map one to one.
#[derive(Debug, Clone)]
pub struct TemporalConv {
    weight: Tensor,
    bias: Option<Tensor>,
    kernel: usize,
    stride: usize,
    dilation: usize,
    kernels: Kernels,
}

impl TemporalConv {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((c_out, c_in, kernel, 1), "weight", CONV_INIT)?;
        let bias = Some(vb.get_with_hints(c_out, "bias", Init::Const(0.))?);
        Ok(Self {
            weight,
            bias,
            kernel,
            stride: stride.max(1),
            dilation: dilation.max(1),
            kernels,
        })
    }

    /// # Shapes
    /// `x: (N, C_in, T, V)` -> `(N, C_out, ceil(T / stride), V)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c_in, t, v) = x.dims4()?;
        let (c_out, _, k, _) = self.weight.dims4()?;
        let pad = self.dilation * (k - 1) / 2;
        // Inference (nothing tracks gradients): the inference kernel (Winograd for 9-tap
        // stride-1 convolutions, Toom-Cook for 9-tap stride-2 ones).
        if let Some(y) = self.forward_folded(x, None, None, false)? {
            return Ok(y);
        }
        if self.kernels.applies(&[x, &self.weight]) {
            let w = self.weight.reshape((c_out, c_in, k))?;
            let (s, d) = (self.stride, self.dilation);
            return crossglg_kernels::temporal_conv_bias(x, &w, self.bias.as_ref(), s, pad, d);
        }
        let t_out = (t + 2 * pad - self.dilation * (k - 1) - 1) / self.stride + 1;
        let cols = if k == 1 {
            subsample(x, self.stride)?
        } else {
            // tap j reads padded frames t·s + j·d = (t + ⌊j·d/s⌋)·s + (j·d mod s)
            let s = self.stride;
            let phases = time_phases(&x.pad_with_zeros(2, pad, pad)?, s)?;
            let taps = (0..k)
                .map(|j| {
                    let o = j * self.dilation;
                    phases[o % s].narrow(2, o / s, t_out)
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&taps, 1)?
        };
        // weight (c_out, c_in, k, 1) -> (c_out, k·c_in), matching the tap-major column order.
        let w = if k == 1 {
            self.weight.reshape((c_out, c_in))?
        } else {
            self.weight
                .reshape((c_out, c_in, k))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((c_out, k * c_in))?
        };
        let cols = cols.reshape((n, k * c_in, t_out * v))?;
        let y = w.broadcast_left(n)?.matmul(&cols)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, c_out, 1))?)?,
            None => y,
        };
        y.reshape((n, c_out, t_out, v))
    }

    /// Inference: `act(bn(conv(x)) [+ residual[:, offset..offset + C_out]])` as one kernel,
    /// the batch norm folded into the weights and bias, the residual read in place. `None`
    /// when that does not apply (fused kernels off, not f32 on the CPU, or a tensor that
    /// tracks gradients); the caller then takes the unfused path.
    ///
    /// # Shapes
    /// `x: (N, C_in, T, V)`, `residual: (N, C_res, T', V)` -> `(N, C_out, T', V)`
    pub fn forward_folded(
        &self,
        x: &Tensor,
        bn: Option<&BatchNorm>,
        residual: Option<(&Tensor, usize)>,
        relu: bool,
    ) -> Result<Option<Tensor>> {
        let extra: Vec<&Tensor> = [x].into_iter().chain(residual.map(|r| r.0)).collect();
        let Some((w, b)) = self.folded(bn, &extra)? else {
            return Ok(None);
        };
        let (s, d, k) = (self.stride, self.dilation, self.kernel);
        let pad = d * (k - 1) / 2;
        crossglg_kernels::temporal_conv_infer(x, &w, b.as_ref(), s, pad, d, residual, relu)
            .map(Some)
    }

    /// The weight `(C_out, C_in, k)` and bias with `bn` folded in, for the inference kernels;
    /// `None` unless the fused kernels apply to these parameters and to `with` (f32 on the CPU,
    /// nothing tracks gradients, the batch norm has an affine part).
    pub fn folded(
        &self,
        bn: Option<&BatchNorm>,
        with: &[&Tensor],
    ) -> Result<Option<(Tensor, Option<Tensor>)>> {
        let bn = match bn.map(|bn| (bn, bn.weight_and_bias())) {
            Some((bn, Some(gb))) => Some((bn, gb)),
            Some((_, None)) => return Ok(None),
            None => None,
        };
        let mut all = with.to_vec();
        all.push(&self.weight);
        all.extend(&self.bias);
        if let Some((_, (g, beta))) = bn {
            all.extend([g, beta]);
        }
        if !self.kernels.applies(&all) || !untracked(&all) {
            return Ok(None);
        }
        let (c_out, c_in, k, _) = self.weight.dims4()?;
        let (w, b) = (self.weight.reshape((c_out, c_in, k))?, self.bias.clone());
        Ok(Some(match bn {
            Some((bn, gb)) => {
                let (wf, bf) = fold_bn(bn, gb, &w, b.as_ref())?;
                (wf, Some(bf))
            }
            None => (w, b),
        }))
    }

    pub fn kernel(&self) -> usize {
        self.kernel
    }

    /// The implementation this convolution was built with.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The weight of a 1×1 convolution as a `(C_out, C_in)` matrix.
    pub fn weight_1x1(&self) -> Result<Tensor> {
        let (c_out, c_in, k, _) = self.weight.dims4()?;
        if k != 1 {
            candle_core::bail!("weight_1x1 called on a convolution with kernel {k}")
        }
        self.weight.reshape((c_out, c_in))
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// Several 1×1 convolutions of the same input as one: weights and biases concatenated along
/// the output channels (one matrix product instead of one per convolution).
///
/// # Shapes
/// `x: (N, C_in, T, V)` -> `(N, Σ C_out, T, V)`
pub fn pointwise_stacked(k: Kernels, x: &Tensor, convs: &[&TemporalConv]) -> Result<Tensor> {
    let w = Tensor::cat(
        &convs
            .iter()
            .map(|c| c.weight_1x1())
            .collect::<Result<Vec<_>>>()?,
        0,
    )?;
    let b = convs
        .iter()
        .map(|c| c.bias().cloned())
        .collect::<Option<Vec<_>>>()
        .map(|b| Tensor::cat(&b, 0))
        .transpose()?;
    pointwise_with(k, x, &w, b.as_ref())
}

/// 1×1 convolution with a given `(C_out, C_in)` weight: the fused kernel on f32 CPU tensors,
/// else [`conv1x1`].
///
/// # Shapes
/// `x: (N, C_in, T, V)`, `w: (C_out, C_in)`, `b: (C_out)` -> `(N, C_out, T, V)`
pub fn pointwise_with(k: Kernels, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    if k.applies(&[x, w]) {
        let (c_out, c_in) = w.dims2()?;
        return crossglg_kernels::temporal_conv_bias(x, &w.reshape((c_out, c_in, 1))?, b, 1, 0, 1);
    }
    conv1x1(x, w, b)
}

/// `nn.Conv2d(c_in, c_out, 1)` (optionally with temporal stride) over `(N, C, T, V)`.
pub fn pointwise(
    c_in: usize,
    c_out: usize,
    stride: usize,
    kernels: Kernels,
    vb: VarBuilder,
) -> Result<TemporalConv> {
    TemporalConv::new(c_in, c_out, 1, stride, 1, kernels, vb)
}

/// Convolution followed by batch norm (`unit_tcn` in CTR-GCN, `TemporalConv` in its MS-TCN).
#[derive(Debug, Clone)]
pub struct ConvBn {
    pub conv: TemporalConv,
    pub bn: BatchNorm,
}

impl ConvBn {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: TemporalConv::new(
                c_in,
                c_out,
                kernel,
                stride,
                dilation,
                kernels,
                vb.pp("conv"),
            )?,
            bn: batch_norm(c_out, 1.0, vb.pp("bn"))?,
        })
    }

    /// # Shapes
    /// `(N, C_in, T, V)` -> `(N, C_out, ceil(T / stride), V)`
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, None, false, train)
    }

    /// `act(bn(conv(x)) [+ residual])`, fused on the CPU (see [`bn_act`]; in inference one
    /// kernel with the batch norm folded in, see [`TemporalConv::forward_folded`]).
    pub fn forward_act(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        self.forward_act_at(x, residual.map(|r| (r, 0)), relu, train)
    }

    /// [`Self::forward_act`] with the residual taken from channels `offset..offset + C_out` of
    /// a wider tensor.
    pub fn forward_act_at(
        &self,
        x: &Tensor,
        residual: Option<(&Tensor, usize)>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        conv_bn_act(&self.conv, &self.bn, x, residual, relu, train)
    }
}

/// `act(bn(conv(x)) [+ residual[:, offset..]])`: one folded kernel in inference
/// ([`TemporalConv::forward_folded`]), else the convolution then [`bn_act`].
pub(crate) fn conv_bn_act(
    conv: &TemporalConv,
    bn: &BatchNorm,
    x: &Tensor,
    residual: Option<(&Tensor, usize)>,
    relu: bool,
    train: bool,
) -> Result<Tensor> {
    if !train {
        if let Some(y) = conv.forward_folded(x, Some(bn), residual, relu)? {
            return Ok(y);
        }
    }
    let res = residual_slice(residual, bn)?;
    bn_act(
        conv.kernels,
        bn,
        &conv.forward(x)?,
        res.as_ref(),
        relu,
        train,
    )
}

/// Max pooling with kernel (3, 1), padding (1, 0) and stride (s, 1). Edge frames are
/// replicated instead of padded with -inf, which gives the same maximum.
pub fn max_pool_time3(k: Kernels, x: &Tensor, stride: usize) -> Result<Tensor> {
    if k.applies(&[x]) {
        return crossglg_kernels::max_pool_time3(x, stride);
    }
    let t = x.dim(2)?;
    let xp = x.pad_with_same(2, 1, 1)?;
    let m = xp
        .narrow(2, 0, t)?
        .maximum(&xp.narrow(2, 1, t)?)?
        .maximum(&xp.narrow(2, 2, t)?)?;
    subsample(&m, stride)
}

enum Branch {
    /// 1×1 conv, BN, ReLU, temporal conv (k, dilation) + BN.
    Conv {
        pre: TemporalConv,
        pre_bn: BatchNorm,
        tconv: ConvBn,
    },
    /// 1×1 conv, BN, ReLU, max-pool (3, 1), BN.
    MaxPool {
        pre: TemporalConv,
        pre_bn: BatchNorm,
        post_bn: BatchNorm,
        stride: usize,
    },
    /// 1×1 conv with temporal stride, BN.
    Point { conv: TemporalConv, bn: BatchNorm },
}

/// CTR-GCN's `MultiScale_TemporalConv` with `residual=False` (the block adds its own
/// residual): one branch per dilation, a max-pool branch and a 1×1 branch, each with
/// `c_out / (len(dilations) + 2)` channels, concatenated.
pub struct MultiScaleTcn {
    branches: Vec<Branch>,
    kernels: Kernels,
}

impl MultiScaleTcn {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        dilations: &[usize],
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let nb = dilations.len() + 2;
        if !c_out.is_multiple_of(nb) {
            candle_core::bail!(
                "multi-scale temporal conv: {c_out} output channels do not split into {nb} branches"
            )
        }
        let bc = c_out / nb;
        let vb = vb.pp("branches");
        let mut branches = Vec::with_capacity(nb);
        for (i, &d) in dilations.iter().enumerate() {
            let b = vb.pp(i);
            branches.push(Branch::Conv {
                pre: pointwise(c_in, bc, 1, kernels, b.pp("0"))?,
                pre_bn: batch_norm(bc, 1.0, b.pp("1"))?,
                tconv: ConvBn::new(bc, bc, kernel, stride, d, kernels, b.pp("3"))?,
            });
        }
        let b = vb.pp(dilations.len());
        branches.push(Branch::MaxPool {
            pre: pointwise(c_in, bc, 1, kernels, b.pp("0"))?,
            pre_bn: batch_norm(bc, 1.0, b.pp("1"))?,
            post_bn: batch_norm(bc, 1.0, b.pp("4"))?,
            stride,
        });
        let b = vb.pp(dilations.len() + 1);
        branches.push(Branch::Point {
            conv: pointwise(c_in, bc, stride, kernels, b.pp("0"))?,
            bn: batch_norm(bc, 1.0, b.pp("1"))?,
        });
        Ok(Self { branches, kernels })
    }

    /// # Shapes
    /// `(N, C_in, T, V)` -> `(N, C_out, ceil(T / stride), V)`
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, None, false, train)
    }

    /// `act(forward(x) [+ residual])`. The residual add and the ReLU happen inside the
    /// branches' last batch norms (one fused pass instead of two more passes over the
    /// concatenated output): in training with the fused kernels one norm over the concatenated
    /// branches ([`Self::forward_train_merged`]), otherwise each branch's on its own channels.
    ///
    /// # Shapes
    /// `x: (N, C_in, T, V)`, `residual: (N, C_out, T', V)` -> `(N, C_out, T', V)`
    pub fn forward_act(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        if train {
            if let Some(y) = self.forward_train_merged(x, residual, relu)? {
                return Ok(y);
            }
        }
        let nb = self.branches.len();
        // inference: the branches' opening 1×1 convs as one product
        let mut opened = match train {
            true => None,
            false => self.open_infer(x)?,
        }
        .map(Vec::into_iter);
        let mut open = |pre: &TemporalConv, pre_bn: &BatchNorm| match opened.as_mut() {
            Some(hs) => hs.next().ok_or_else(|| {
                candle_core::Error::Msg("multi-scale temporal conv: lost a branch input".into())
            }),
            None => conv_bn_act(pre, pre_bn, x, None, true, train),
        };
        let outs = self
            .branches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let res = residual.map(|r| (r, i * (r.dims()[1] / nb)));
                match b {
                    Branch::Conv { pre, pre_bn, tconv } => {
                        let h = open(pre, pre_bn)?;
                        tconv.forward_act_at(&h, res, relu, train)
                    }
                    Branch::MaxPool {
                        pre,
                        pre_bn,
                        post_bn,
                        stride,
                    } => {
                        let h = open(pre, pre_bn)?;
                        let res = residual_slice(res, post_bn)?;
                        let p = max_pool_time3(self.kernels, &h, *stride)?;
                        bn_act(self.kernels, post_bn, &p, res.as_ref(), relu, train)
                    }
                    Branch::Point { conv, bn } => conv_bn_act(conv, bn, x, res, relu, train),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&outs, 1)
    }

    /// Training with the fused kernels: every branch up to its last batch norm, the branches
    /// concatenated, then their last norms, the residual add and the ReLU as one fused pass
    /// over all channels ([`PartsNorm`]); equal to [`Self::forward_act`]'s per-branch form.
    /// `None` where the fused kernels do not apply.
    fn forward_train_merged(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
    ) -> Result<Option<Tensor>> {
        let last_bns = self
            .branches
            .iter()
            .map(|b| match b {
                Branch::Conv { tconv, .. } => &tconv.bn,
                Branch::MaxPool { post_bn, .. } => post_bn,
                Branch::Point { bn, .. } => bn,
            })
            .collect();
        let Some(norm) = PartsNorm::new(self.kernels, last_bns, x, residual)? else {
            return Ok(None);
        };
        let parts = self
            .branches
            .iter()
            .map(|b| match b {
                Branch::Conv { pre, pre_bn, tconv } => tconv
                    .conv
                    .forward(&conv_bn_act(pre, pre_bn, x, None, true, true)?),
                Branch::MaxPool {
                    pre,
                    pre_bn,
                    stride,
                    ..
                } => {
                    let h = conv_bn_act(pre, pre_bn, x, None, true, true)?;
                    max_pool_time3(self.kernels, &h, *stride)
                }
                Branch::Point { conv, .. } => conv.forward(x),
            })
            .collect::<Result<Vec<_>>>()?;
        norm.forward(&parts, residual, relu).map(Some)
    }

    /// The inputs of the convolution and max-pool branches in inference: their 1×1 convs with
    /// the batch norms folded in and the ReLU, as one product written to one tensor per
    /// branch (`pointwise_split_infer`). `None` where the fused kernels do not apply.
    fn open_infer(&self, x: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let (mut ws, mut bs, mut splits) = (Vec::new(), Vec::new(), Vec::new());
        for b in &self.branches {
            let (Branch::Conv { pre, pre_bn, .. } | Branch::MaxPool { pre, pre_bn, .. }) = b else {
                continue;
            };
            if (pre.kernel, pre.stride) != (1, 1) {
                return Ok(None);
            }
            let Some((w, Some(bias))) = pre.folded(Some(pre_bn), &[x])? else {
                return Ok(None);
            };
            let (c_out, c_in, _) = w.dims3()?;
            ws.push(w.reshape((c_out, c_in))?);
            bs.push(bias);
            splits.push(c_out);
        }
        if ws.is_empty() {
            return Ok(None);
        }
        let (w, b) = (Tensor::cat(&ws, 0)?, Tensor::cat(&bs, 0)?);
        crossglg_kernels::pointwise_split_infer(x, &w, &b, &splits, true).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn seq(shape: &[usize], scale: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i * 37 + 11) % 101) as f64 / 50.0 - 1.0) as f32)
            .collect();
        (Tensor::from_vec(v, shape, &Device::Cpu).unwrap() * scale).unwrap()
    }

    /// The unfold + matmul temporal conv equals candle's conv2d with a (k, 1) kernel: padding
    /// applied to both axes there, so crop the joint axis; stride s is the stride-1 result
    /// subsampled.
    #[test]
    fn temporal_conv_matches_conv2d() {
        let (n, c_in, c_out, t, v) = (2, 3, 4, 9, 5);
        let x = seq(&[n, c_in, t, v], 1.0);
        for (k, d) in [(1, 1), (3, 1), (5, 1), (5, 2), (9, 1)] {
            let w = seq(&[c_out, c_in, k, 1], 0.3);
            let b = seq(&[c_out], 0.1);
            let pad = d * (k - 1) / 2;
            let reference = x
                .conv2d(&w, pad, 1, d, 1)
                .unwrap()
                .narrow(3, pad, v)
                .unwrap()
                .broadcast_add(&b.reshape((1, c_out, 1, 1)).unwrap())
                .unwrap();
            for (s, kernels) in [1, 2, 3]
                .into_iter()
                .flat_map(|s| [Kernels::Fused, Kernels::Plain].map(|k| (s, k)))
            {
                let conv = TemporalConv {
                    weight: w.clone(),
                    bias: Some(b.clone()),
                    kernel: k,
                    stride: s,
                    dilation: d,
                    kernels,
                };
                let got = conv.forward(&x).unwrap();
                let want = subsample(&reference, s).unwrap();
                assert_eq!(
                    got.dims(),
                    &[n, c_out, t.div_ceil(s), v],
                    "k={k} d={d} s={s} {kernels:?}"
                );
                let diff = (got - want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "k={k} d={d} s={s} {kernels:?}: {diff}");
            }
        }
    }

    #[test]
    fn subsample_and_max_pool() {
        let x = Tensor::arange(0f32, 7., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 7, 1))
            .unwrap();
        let s: Vec<f32> = subsample(&x, 3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(s, vec![0., 3., 6.]);
        let y = Tensor::new(&[3f32, 1., 0., 5., 2.], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 5, 1))
            .unwrap();
        for k in [Kernels::Fused, Kernels::Plain] {
            let pool = |s| -> Vec<f32> {
                let m = max_pool_time3(k, &y, s).unwrap();
                m.flatten_all().unwrap().to_vec1().unwrap()
            };
            assert_eq!(pool(1), vec![3., 3., 5., 5., 5.], "{k:?}");
            assert_eq!(pool(2), vec![3., 5., 5.], "{k:?}");
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use candle_core::Device;
    use std::time::Instant;

    /// `cargo test -p crossglg-model --lib timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_temporal_conv() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (8, 64, 64, 25), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.1, (64, 64, 9, 1), &dev).unwrap();
        let conv = TemporalConv {
            weight: w.clone(),
            bias: None,
            kernel: 9,
            stride: 1,
            dilation: 1,
            kernels: Kernels::Fused,
        };
        for _ in 0..2 {
            let t = Instant::now();
            conv.forward(&x).unwrap();
            eprintln!("unfold+matmul {:?}", t.elapsed());
            let t = Instant::now();
            x.conv2d(&w, 4, 1, 1, 1).unwrap();
            eprintln!("conv2d {:?}", t.elapsed());
            let t = Instant::now();
            let xp = x.pad_with_zeros(2, 4, 4).unwrap();
            let taps: Vec<Tensor> = (0..9).map(|j| xp.narrow(2, j, 64).unwrap()).collect();
            let cols = Tensor::cat(&taps, 1).unwrap();
            eprintln!("  unfold {:?}", t.elapsed());
            let t = Instant::now();
            let w2 = w.reshape((64, 576)).unwrap();
            let cols = cols.reshape((8, 576, 1600)).unwrap();
            w2.broadcast_left(8).unwrap().matmul(&cols).unwrap();
            eprintln!("  bmm (broadcast) {:?}", t.elapsed());
            let t = Instant::now();
            w2.broadcast_left(8)
                .unwrap()
                .contiguous()
                .unwrap()
                .matmul(&cols)
                .unwrap();
            eprintln!("  bmm (materialised) {:?}", t.elapsed());
            let a = Tensor::randn(0f32, 1., (25, 25), &dev).unwrap();
            let t = Instant::now();
            aggregate(&x, &a).unwrap();
            eprintln!("  aggregate {:?}", t.elapsed());
        }
    }
}
