//! InfoGCN (Chi et al., CVPR 2022): self-attention graph convolution encoder and its
//! information-bottleneck readout.
//!
//! Follows `model/infogcn.py` + `model/modules.py` of stnoah1/infogcn: input transform
//! `(I − A_outwardᵏ)·x`, linear joint embedding + learned positional embedding, data BN over
//! `M·V·C`, ten `EncodingBlock`s (SA-GC: per head `conv_d_h(softmax(q kᵀ/√d)_h ⊙ Â_h · x)`,
//! summed, BN, down-projection residual, ReLU; then the multi-scale TCN and the block
//! residual). The shared topology `Â` (identity per head at init) is stored as
//! `I + shared_topology_delta`.
//!
//! The readout ([`InfoBottleneck`]) is InfoGCN's: `fc → ReLU → (mu, logvar)`,
//! `z = mu + ε·exp(noise_ratio·logvar)` in training and `z = mu` in eval. Its loss terms are
//! the ones InfoGCN's training script optimises (`get_mmd_loss`): the MSE between the
//! class-wise means of `z` in the batch and fixed orthogonal class prior means ("mmd"), and the
//! L2 norm of the batch mean of `z` ("l2_mean"). InfoGCN's paper motivates these as a
//! variational IB bound; like the reference code we do not add a KL term to `N(mu, σ)`.

use crate::ctrgcn::data_bn_mvc;
use crate::encoder_config::{EncoderConfig, InfoGcnOptions};
use crate::error::Result;
use crate::graph::Graph;
use crate::layers::Linear;
use crate::layers::{
    batch_norm, bn_act, fold_bn, joint_weight_mul, linear, pointwise, pointwise_with, softmax_last,
    sum_each, untracked, ConvBn, Kernels, LayerNorm, MultiScaleTcn, Residual, TemporalConv,
};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{BatchNorm, Init, VarBuilder};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Mutex;

/// InfoGCN's `SelfAttention`: per-frame joint-to-joint attention maps, one per head.
struct SelfAttention {
    ln: LayerNorm,
    to_qk: Linear,
    heads: usize,
    hidden: usize,
    kernels: Kernels,
}

impl SelfAttention {
    /// # Shapes
    /// `x: (N, C, T, V)` -> `(N·T, H, V, V)`
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, t, v) = x.dims4()?;
        let (lw, lb) = (self.ln.weight(), self.ln.bias());
        let (pw, pb) = (self.to_qk.weight(), self.to_qk.bias());
        if let Some(pb) = pb.filter(|pb| self.kernels.applies(&[x, lw, lb, pw, pb])) {
            // one fused op (LayerNorm, projection, scores, softmax), same result
            let eps = self.ln.eps();
            return crossglg_kernels::joint_attention(x, lw, lb, pw, pb, self.heads, eps)?
                .reshape((n * t, self.heads, v, v));
        }
        let y = x
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((n * t, v, c))?;
        let y = self.to_qk.forward(&self.ln.forward(&y)?)?; // (N·T, V, 2·H·D)
        let (h, d) = (self.heads, self.hidden);
        let split = |off: usize| -> candle_core::Result<Tensor> {
            y.narrow(2, off, h * d)?
                .reshape((n * t, v, h, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(0)?;
        let k = split(h * d)?;
        let dots = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * (d as f64).powf(-0.5))?;
        softmax_last(&dots)
    }
}

struct SaGc {
    topo_delta: Tensor,
    conv_d: Vec<TemporalConv>,
    down: Option<ConvBn>,
    bn: BatchNorm,
    attn: SelfAttention,
    kernels: Kernels,
}

/// The plain forms' inputs: the per-head topologies `attn ⊙ topo` `(N·T, H, V, V)` and the
/// features as `(N·T, V, C)` rows.
fn head_inputs(x: &Tensor, attn: &Tensor, topo: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let (n, c, t, v) = x.dims4()?;
    let a = attn.broadcast_mul(&topo.unsqueeze(0)?)?;
    let feat = x
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((n * t, v, c))?;
    Ok((a, feat))
}

impl SaGc {
    /// `Σ_h conv_d_h((attn_h ⊙ topo_h) · x)` with plain candle ops, one head at a time.
    ///
    /// # Shapes
    /// `x: (N, C, T, V)`, `attn: (N·T, H, V, V)`, `topo: (H, V, V)` -> `(N, C_out, T, V)`
    fn aggregate_plain(
        &self,
        x: &Tensor,
        attn: &Tensor,
        topo: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (n, c, t, v) = x.dims4()?;
        let (a, feat) = head_inputs(x, attn, topo)?;
        sum_each(self.conv_d.iter().enumerate().map(|(hd, conv)| {
            let z = a
                .narrow(1, hd, 1)?
                .squeeze(1)?
                .contiguous()?
                .matmul(&feat)?
                .reshape((n, t, v, c))?
                .permute((0, 3, 1, 2))?
                .contiguous()?;
            conv.forward(&z)
        }))
    }

    /// The same sum for the CPU (equal up to rounding; tested against
    /// [`Self::aggregate_plain`]): one fused op aggregates every head straight from the
    /// `(N, C, T, V)` layout into head-major channel groups, and the per-head `conv_d`s become
    /// one 1×1 convolution over `H·C` input channels (weights side by side, biases summed).
    fn aggregate_fused(
        &self,
        x: &Tensor,
        attn: &Tensor,
        topo: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (z, w, b) = self.heads_and_conv(x, attn, topo)?;
        pointwise_with(self.kernels, &z, &w, b.as_ref())
    }

    /// The fused form's arrangement in plain candle ops, for devices without the fused kernel
    /// (`Kernels::device_forms`): every head in one batched product, one copy into head-major
    /// channel groups `(N, H·C, T, V)`, then one 1×1 convolution, where
    /// [`Self::aggregate_plain`] makes a product, a transposed copy and a convolution per head
    /// and keeps each for the backward pass.
    fn aggregate_portable(
        &self,
        x: &Tensor,
        attn: &Tensor,
        topo: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (n, c, t, v) = x.dims4()?;
        let h = self.conv_d.len();
        let (a, feat) = head_inputs(x, attn, topo)?;
        let z = a
            .reshape((n * t, h * v, v))?
            .matmul(&feat)?
            .reshape((n, t, h, v, c))?
            .permute((0, 2, 4, 1, 3))?
            .contiguous()?
            .reshape((n, h * c, t, v))?;
        let (w, b) = self.stacked_conv()?;
        pointwise_with(Kernels::Plain, &z, &w, b.as_ref())
    }

    /// `head_aggregate` of `x`, and the `conv_d`s as one `(C_out, H·C)` weight and bias.
    fn heads_and_conv(
        &self,
        x: &Tensor,
        attn: &Tensor,
        topo: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let (n, _, t, v) = x.dims4()?;
        let h = self.conv_d.len();
        let z = crossglg_kernels::head_aggregate(x, &attn.reshape((n, t, h, v, v))?, topo)?;
        let (w, b) = self.stacked_conv()?;
        Ok((z, w, b))
    }

    /// The `conv_d`s as one `(C_out, H·C)` weight (side by side) and bias (summed).
    fn stacked_conv(&self) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let w = Tensor::cat(
            &self
                .conv_d
                .iter()
                .map(|c| c.weight_1x1())
                .collect::<candle_core::Result<Vec<_>>>()?,
            1,
        )?;
        let b = self
            .conv_d
            .iter()
            .map(|c| c.bias().cloned())
            .collect::<Option<Vec<_>>>()
            .map(|b| Tensor::stack(&b, 0)?.sum(0))
            .transpose()?;
        Ok((w, b))
    }

    /// Inference: `relu(bn(Σ_h conv_d_h(…)) + down)` with the batch norm folded into the
    /// stacked `conv_d` and the residual add + ReLU inside the conv kernel. `None` when the
    /// inference kernels do not apply.
    fn aggregate_bn_act_infer(
        &self,
        x: &Tensor,
        attn: &Tensor,
        topo: &Tensor,
        down: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let Some((g, beta)) = self.bn.weight_and_bias() else {
            return Ok(None);
        };
        let all = [x, attn, topo, down, g, beta];
        if !self.kernels.applies(&all) || !untracked(&all) {
            return Ok(None);
        }
        let (n, _, t, v) = x.dims4()?;
        let h = self.conv_d.len();
        let (w, b) = self.stacked_conv()?;
        let (w, b) = fold_bn(&self.bn, (g, beta), &w, b.as_ref())?;
        let p = attn.reshape((n, t, h, v, v))?;
        crossglg_kernels::head_aggregate_conv_infer(x, &p, topo, &w, Some(&b), Some(down), true)
            .map(Some)
    }
}

struct Block {
    gcn: SaGc,
    tcn: MultiScaleTcn,
    residual: Residual,
}

pub struct InfoGcn {
    pub(crate) cfg: EncoderConfig,
    /// `(V, V)`: `I − A_outwardᵏ`.
    a_vector: Tensor,
    embed: Linear,
    pos: Tensor,
    data_bn: BatchNorm,
    eye: Tensor,
    blocks: Vec<Block>,
}

fn mat_pow(a: &[Vec<f32>], k: usize) -> Vec<Vec<f32>> {
    let v = a.len();
    let mut r: Vec<Vec<f32>> = (0..v)
        .map(|i| (0..v).map(|j| f32::from(u8::from(i == j))).collect())
        .collect();
    for _ in 0..k {
        r = (0..v)
            .map(|i| {
                (0..v)
                    .map(|j| (0..v).map(|l| r[i][l] * a[l][j]).sum())
                    .collect()
            })
            .collect();
    }
    r
}

/// InfoGCN's input transform `I − A_outwardᵏ` (`k = 0`: the identity), `(V, V)` row-major.
pub fn input_transform(graph: &Graph, k: usize) -> Vec<f32> {
    let v = graph.num_joints;
    if k == 0 {
        return mat_pow(&graph.outward_binary(), 0).concat();
    }
    let p = mat_pow(&graph.outward_binary(), k);
    (0..v)
        .flat_map(|i| {
            let p = &p;
            (0..v).map(move |j| f32::from(u8::from(i == j)) - p[i][j])
        })
        .collect()
}

impl InfoGcn {
    pub fn new(cfg: &EncoderConfig, graph: &Graph, vb: VarBuilder) -> Result<Self> {
        let v = graph.num_joints;
        let dev = vb.device().clone();
        let dt = vb.dtype();
        let opts = &cfg.info;
        let a_vec = input_transform(graph, opts.k);
        let a_vector = Tensor::from_vec(a_vec, (v, v), &dev)?.to_dtype(dt)?;
        let c0 = cfg.blocks[0].channels;
        let heads = opts.heads;
        let eye = Tensor::eye(v, dt, &dev)?
            .unsqueeze(0)?
            .broadcast_as((heads, v, v))?
            .contiguous()?;
        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        let mut c_in = c0;
        for (i, spec) in cfg.blocks.iter().enumerate() {
            let b = vb.pp(format!("l{}", i + 1));
            let c_out = spec.channels;
            let g = b.pp("agcn");
            let hidden = (c_in / 8).max(1);
            let sa = g.pp("attn");
            let gcn = SaGc {
                topo_delta: g.get_with_hints(
                    (heads, v, v),
                    "shared_topology_delta",
                    Init::Const(0.),
                )?,
                conv_d: (0..heads)
                    .map(|h| pointwise(c_in, c_out, 1, cfg.kernels, g.pp(format!("conv_d.{h}"))))
                    .collect::<candle_core::Result<Vec<_>>>()?,
                down: if c_in != c_out {
                    Some(ConvBn::new(
                        c_in,
                        c_out,
                        1,
                        1,
                        1,
                        cfg.kernels,
                        g.pp("down"),
                    )?)
                } else {
                    None
                },
                bn: batch_norm(c_out, 1e-6, g.pp("bn"))?,
                attn: SelfAttention {
                    ln: LayerNorm::new(c_in, sa.pp("ln"))?,
                    to_qk: linear(c_in, 2 * hidden * heads, sa.pp("to_qk"))?,
                    heads,
                    hidden,
                    kernels: cfg.kernels,
                },
                kernels: cfg.kernels,
            };
            blocks.push(Block {
                gcn,
                tcn: MultiScaleTcn::new(
                    c_out,
                    c_out,
                    cfg.temporal_kernel,
                    spec.stride,
                    &cfg.dilations,
                    cfg.kernels,
                    b.pp("tcn"),
                )?,
                residual: Residual::new(
                    true,
                    c_in,
                    c_out,
                    spec.stride,
                    cfg.kernels,
                    b.pp("residual"),
                )?,
            });
            c_in = c_out;
        }
        Ok(Self {
            cfg: cfg.clone(),
            a_vector,
            embed: linear(cfg.in_channels, c0, vb.pp("to_joint_embedding"))?,
            pos: vb.get_with_hints(
                (1, v, c0),
                "pos_embedding",
                Init::Randn {
                    mean: 0.,
                    stdev: 1.,
                },
            )?,
            data_bn: batch_norm(cfg.num_persons * v * c0, 1.0, vb.pp("data_bn"))?,
            eye,
            blocks,
        })
    }

    /// # Shapes
    /// `x: (N, C, T, V, M)` -> `(N·M, C_0, T, V)`
    pub fn stem(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let (n, c, t, v, m) = x.dims5()?;
        // (N, C, T, V, M) -> (N·M·T, V, C)
        let h = x
            .permute((0, 4, 2, 3, 1))?
            .contiguous()?
            .reshape((n * m * t, v, c))?;
        let h = self.a_vector.broadcast_left(n * m * t)?.matmul(&h)?;
        let h = self.embed.forward(&h)?.broadcast_add(&self.pos)?; // (N·M·T, V, C0)
        let c0 = h.dim(2)?;
        // back to (N, C0, T, V, M) for the shared data BN
        let h = h
            .reshape((n, m, t, v, c0))?
            .permute((0, 4, 2, 3, 1))?
            .contiguous()?;
        data_bn_mvc(self.cfg.kernels, &self.data_bn, &h, train)
    }

    /// # Shapes
    /// `h: (N·M, C_in, T, V)`, `joint_weight: (N·M, 1, 1, V)` -> `(N·M, C_out, T', V)`
    pub fn block(
        &self,
        i: usize,
        h: &Tensor,
        joint_weight: Option<&Tensor>,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let blk = &self.blocks[i];
        let g = &blk.gcn;
        let attn = g.attn.forward(h)?; // (N·T, H, V, V)
        let topo = (&self.eye + &g.topo_delta)?;
        let down = match &g.down {
            Some(d) => d.forward(h, train)?,
            None => h.clone(),
        };
        let folded = if train {
            None
        } else {
            g.aggregate_bn_act_infer(h, &attn, &topo, &down)?
        };
        let mut y = match folded {
            Some(y) => y,
            None => {
                let y = if self.cfg.kernels.applies(&[h, &attn]) {
                    g.aggregate_fused(h, &attn, &topo)?
                } else if self.cfg.kernels.device_forms(&[h, &attn]) {
                    g.aggregate_portable(h, &attn, &topo)?
                } else {
                    g.aggregate_plain(h, &attn, &topo)?
                };
                bn_act(self.cfg.kernels, &g.bn, &y, Some(&down), true, train)?
            }
        };
        if let Some(w) = joint_weight {
            y = joint_weight_mul(self.cfg.kernels, &y, w)?;
        }
        let res = blk.residual.forward(h, train)?;
        blk.tcn.forward_act(&y, res.as_ref(), true, train)
    }
}

/// InfoGCN's information-bottleneck readout: pooled features -> latent `z`.
pub struct InfoBottleneck {
    fc: Linear,
    fc_mu: Linear,
    fc_logvar: Linear,
    noise_ratio: f64,
    /// `(K, D)` fixed class prior means.
    prior: Tensor,
    rng: Mutex<rand::rngs::StdRng>,
}

/// Output of [`InfoBottleneck::forward`].
#[derive(Debug, Clone)]
pub struct Latent {
    /// Sampled latent in training, `mu` in eval: `(N, D)`.
    pub z: Tensor,
    pub mu: Tensor,
    pub logvar: Tensor,
}

/// Rows of a `(k, d)` matrix with orthonormal rows (Gram–Schmidt on Gaussian draws) times
/// `gain`, as `nn.init.orthogonal_` gives InfoGCN's `z_prior`. With `k > d` only the first `d`
/// rows can be orthogonal; the rest are unit-norm random directions.
pub fn orthogonal_rows(k: usize, d: usize, gain: f64, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(k);
    while rows.len() < k {
        let mut r: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        if rows.len() < d {
            for q in &rows {
                let dot: f64 = r.iter().zip(q).map(|(a, b)| a * b).sum();
                r.iter_mut().zip(q).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = r.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm < 1e-8 {
            continue;
        }
        r.iter_mut().for_each(|a| *a /= norm);
        rows.push(r);
    }
    rows.into_iter().flatten().map(|a| a * gain).collect()
}

impl InfoBottleneck {
    pub fn new(
        dim: usize,
        num_classes: usize,
        opts: &InfoGcnOptions,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let prior = orthogonal_rows(num_classes, dim, opts.prior_gain, opts.prior_seed);
        let prior = Tensor::from_vec(prior, (num_classes, dim), &Device::Cpu)?
            .to_dtype(vb.dtype())?
            .to_device(vb.device())?;
        Ok(Self {
            fc: linear(dim, dim, vb.pp("fc"))?,
            fc_mu: linear(dim, dim, vb.pp("fc_mu"))?,
            fc_logvar: linear(dim, dim, vb.pp("fc_logvar"))?,
            noise_ratio: opts.noise_ratio,
            prior,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(opts.noise_seed)),
        })
    }

    /// # Shapes
    /// `g: (N, D)` -> `Latent { z, mu, logvar }`, each `(N, D)`
    pub fn forward(&self, g: &Tensor, train: bool) -> candle_core::Result<Latent> {
        let h = self.fc.forward(g)?.relu()?;
        let mu = self.fc_mu.forward(&h)?;
        let logvar = self.fc_logvar.forward(&h)?;
        let z = if train {
            let std = (&logvar * self.noise_ratio)?.exp()?.clamp(0f64, 100f64)?;
            let n = std.elem_count();
            let eps: Vec<f32> = {
                let mut rng = self
                    .rng
                    .lock()
                    .map_err(|_| candle_core::Error::Msg("latent RNG lock poisoned".into()))?;
                (0..n).map(|_| StandardNormal.sample(&mut *rng)).collect()
            };
            let eps = Tensor::from_vec(eps, std.shape(), &Device::Cpu)?
                .to_dtype(std.dtype())?
                .to_device(std.device())?;
            (&mu + (eps * std)?)?
        } else {
            mu.clone()
        };
        Ok(Latent { z, mu, logvar })
    }

    /// The fixed class prior means `(K, D)`.
    pub fn prior(&self) -> &Tensor {
        &self.prior
    }

    /// InfoGCN's `get_mmd_loss`: returns `(mmd, l2_mean)` where `mmd` is the MSE between the
    /// per-class means of `z` over the classes present in the batch and their prior means, and
    /// `l2_mean` the L2 norm of the batch mean of `z`.
    ///
    /// # Shapes
    /// `z: (N, D)`, `labels: (N)` u32 -> two scalars
    pub fn loss_terms(&self, z: &Tensor, labels: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (n, _) = z.dims2()?;
        let k = self.prior.dim(0)?;
        let labels_v: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
        if labels_v.len() != n {
            candle_core::bail!("{} labels for a batch of {n}", labels_v.len())
        }
        let mut present: Vec<u32> = labels_v.clone();
        present.sort_unstable();
        present.dedup();
        if let Some(&bad) = present.iter().find(|&&c| c as usize >= k) {
            candle_core::bail!("label {bad} is out of range for {k} classes")
        }
        // one-hot averaging matrix P (C_present, N): row c averages the samples of class c.
        let mut p = vec![0f32; present.len() * n];
        for (ci, &c) in present.iter().enumerate() {
            let idx: Vec<usize> = (0..n).filter(|&i| labels_v[i] == c).collect();
            for &i in &idx {
                p[ci * n + i] = 1.0 / idx.len() as f32;
            }
        }
        let p = Tensor::from_vec(p, (present.len(), n), &Device::Cpu)?
            .to_dtype(z.dtype())?
            .to_device(z.device())?;
        let class_means = p.matmul(z)?;
        let ids = Tensor::from_vec(present.clone(), present.len(), z.device())?;
        let prior = self.prior.index_select(&ids, 0)?.detach();
        let mmd = (class_means - prior)?.sqr()?.mean_all()?;
        let l2 = z.mean(0)?.sqr()?.sum_all()?.sqrt()?;
        Ok((mmd, l2))
    }
}
