//! A minimal reference ST-GCN (6 blocks, 3→64→64→64→128/2→128→256/2, K = 3 partitions, temporal
//! kernel 9) with two interchangeable execution paths over the same parameters:
//! - `Path::Plain`: stock candle / candle_nn ops (the natural way to write it in candle);
//! - `Path::Fused`: the `crossglg-kernels` ops.
//!
//! Block: graph conv (1×1 conv to K·C channels + aggregation with K adjacency matrices), BN, ReLU,
//! temporal conv (9×1, stride s, padding 4), BN, + residual (none / identity / strided 1×1 conv +
//! BN), ReLU. No biases in convolutions (each is followed by BN). Head: mean over time, joints and
//! persons, then a linear classifier. The PyTorch twin is `bench/torch_reference.py`.

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_nn::{BatchNorm, ModuleT};
use crossglg_kernels::{graph_conv, temporal_conv, FusedBatchNorm};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Which implementation runs the same parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Plain,
    Fused,
}

const K: usize = 3;
const KT: usize = 9;
const EPS: f64 = 1e-5;

/// Spatial partition (self, inward, outward), column-normalised; `(K, V, V)`. For V ≠ 25 the
/// joints form a chain (the benchmark only needs the shape).
pub fn adjacency(v: usize) -> Result<Tensor> {
    let (edges, center) = if v == 25 {
        let l = crate::ntu25();
        (l.edges, l.center)
    } else {
        ((1..v).map(|i| (i - 1, i)).collect(), 0)
    };
    let mut nbr = vec![Vec::new(); v];
    for &(i, j) in &edges {
        nbr[i].push(j);
        nbr[j].push(i);
    }
    let mut hops = vec![usize::MAX; v];
    hops[center] = 0;
    let mut queue = std::collections::VecDeque::from([center]);
    while let Some(u) = queue.pop_front() {
        for &w in &nbr[u] {
            if hops[w] == usize::MAX {
                hops[w] = hops[u] + 1;
                queue.push_back(w);
            }
        }
    }
    let mut a = vec![0f32; K * v * v];
    for i in 0..v {
        a[i * v + i] = 1.0;
        for &j in &nbr[i] {
            let k = if hops[j] > hops[i] { 1 } else { 2 };
            a[k * v * v + j * v + i] = 1.0;
        }
    }
    for col in 0..v {
        let deg: f32 = (0..K * v).map(|r| a[r * v + col]).sum::<f32>().max(1.0);
        for r in 0..K * v {
            a[r * v + col] /= deg;
        }
    }
    Tensor::from_vec(a, (K, v, v), &Device::Cpu)
}

struct Bn {
    gamma: Var,
    beta: Var,
    plain: BatchNorm,
    fused: FusedBatchNorm,
}

impl Bn {
    fn new(c: usize) -> Result<Self> {
        let gamma = Var::ones(c, DType::F32, &Device::Cpu)?;
        let beta = Var::zeros(c, DType::F32, &Device::Cpu)?;
        let zeros = Tensor::zeros(c, DType::F32, &Device::Cpu)?;
        let ones = Tensor::ones(c, DType::F32, &Device::Cpu)?;
        let plain = BatchNorm::new(
            c,
            zeros,
            ones,
            gamma.as_tensor().clone(),
            beta.as_tensor().clone(),
            EPS,
        )?;
        let fused = FusedBatchNorm::new(
            gamma.as_tensor().clone(),
            beta.as_tensor().clone(),
            EPS,
            0.1,
        )?;
        Ok(Self {
            gamma,
            beta,
            plain,
            fused,
        })
    }

    /// act(bn(x) [+ r])
    fn forward(
        &self,
        x: &Tensor,
        r: Option<&Tensor>,
        relu: bool,
        path: Path,
        train: bool,
    ) -> Result<Tensor> {
        match path {
            Path::Fused => self.fused.forward_t(x, r, relu, train),
            Path::Plain => {
                let y = if train {
                    self.plain.forward_t(x, true)?
                } else {
                    // A detached twin so inference records no graph.
                    let c = self.gamma.dim(0)?;
                    BatchNorm::new(
                        c,
                        self.plain.running_mean().clone(),
                        self.plain.running_var().clone(),
                        self.gamma.as_tensor().detach(),
                        self.beta.as_tensor().detach(),
                        EPS,
                    )?
                    .forward_t(x, false)?
                };
                let y = match r {
                    Some(r) => (y + r)?,
                    None => y,
                };
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
        }
    }

    fn vars(&self) -> [&Var; 2] {
        [&self.gamma, &self.beta]
    }
}

enum Residual {
    None,
    Identity,
    Conv { w: Var, bn: Bn },
}

struct Block {
    cin: usize,
    cout: usize,
    stride: usize,
    gcn_w: Var,
    a: Tensor,
    bn1: Bn,
    tcn_w: Var,
    bn2: Bn,
    res: Residual,
}

fn kaiming(rng: &mut StdRng, shape: &[usize], fan_in: usize) -> Result<Var> {
    let std = (2.0 / fan_in as f64).sqrt();
    let normal = Normal::new(0.0, std).map_err(candle_core::Error::wrap)?;
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| normal.sample(rng) as f32).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn p(v: &Var, train: bool) -> Tensor {
    if train {
        v.as_tensor().clone()
    } else {
        v.as_tensor().detach()
    }
}

/// Keep every `s`-th frame of `(N, C, T, V)` (T padded up to a multiple of s first).
fn subsample_time(x: &Tensor, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(x.clone());
    }
    let (n, c, t, v) = x.dims4()?;
    let t_out = t.div_ceil(s);
    let x = if t_out * s > t {
        x.pad_with_zeros(2, 0, t_out * s - t)?
    } else {
        x.clone()
    };
    x.reshape((n, c, t_out, s, v))?.narrow(3, 0, 1)?.squeeze(3)
}

impl Block {
    fn new(
        rng: &mut StdRng,
        cin: usize,
        cout: usize,
        stride: usize,
        residual: bool,
        a: &Tensor,
    ) -> Result<Self> {
        let res = if !residual {
            Residual::None
        } else if cin == cout && stride == 1 {
            Residual::Identity
        } else {
            Residual::Conv {
                w: kaiming(rng, &[cout, cin, 1], cin)?,
                bn: Bn::new(cout)?,
            }
        };
        Ok(Self {
            cin,
            cout,
            stride,
            gcn_w: kaiming(rng, &[K * cout, cin], cin)?,
            a: a.clone(),
            bn1: Bn::new(cout)?,
            tcn_w: kaiming(rng, &[cout, cout, KT], cout * KT)?,
            bn2: Bn::new(cout)?,
            res,
        })
    }

    fn forward(&self, x: &Tensor, path: Path, train: bool) -> Result<Tensor> {
        let (n, _, t, v) = x.dims4()?;
        let y = match path {
            Path::Fused => graph_conv(x, &p(&self.gcn_w, train), &self.a)?,
            Path::Plain => {
                let y =
                    p(&self.gcn_w, train).broadcast_matmul(&x.reshape((n, self.cin, t * v))?)?;
                let y = y
                    .reshape((n, K, self.cout * t, v))?
                    .broadcast_matmul(&self.a)?;
                y.sum(1)?.reshape((n, self.cout, t, v))?
            }
        };
        let y = self.bn1.forward(&y, None, true, path, train)?;
        let z = match path {
            Path::Fused => temporal_conv(&y, &p(&self.tcn_w, train), self.stride, KT / 2)?,
            Path::Plain => plain_tconv(&y, &p(&self.tcn_w, train), self.stride, KT / 2)?,
        };
        let r = match &self.res {
            Residual::None => None,
            Residual::Identity => Some(x.clone()),
            Residual::Conv { w, bn } => {
                let r = match path {
                    Path::Fused => temporal_conv(x, &p(w, train), self.stride, 0)?,
                    Path::Plain => {
                        let xs = subsample_time(x, self.stride)?;
                        let (_, _, to, _) = xs.dims4()?;
                        p(w, train)
                            .reshape((self.cout, self.cin))?
                            .broadcast_matmul(&xs.contiguous()?.reshape((n, self.cin, to * v))?)?
                            .reshape((n, self.cout, to, v))?
                    }
                };
                Some(bn.forward(&r, None, false, path, train)?)
            }
        };
        self.bn2.forward(&z, r.as_ref(), true, path, train)
    }

    fn vars(&self) -> Vec<&Var> {
        let mut v = vec![&self.gcn_w, &self.tcn_w];
        v.extend(self.bn1.vars());
        v.extend(self.bn2.vars());
        if let Residual::Conv { w, bn } = &self.res {
            v.push(w);
            v.extend(bn.vars());
        }
        v
    }

    /// Forward multiply-add FLOPs (×2) for one skeleton sequence of `t` frames and `v` joints.
    fn flops(&self, t: usize, v: usize) -> (f64, usize) {
        let t_out = (t + 2 * (KT / 2) - KT) / self.stride + 1;
        let (ci, co) = (self.cin as f64, self.cout as f64);
        let (tf, vf, tof) = (t as f64, v as f64, t_out as f64);
        let mut f = 2.0 * ci * (K as f64) * co * tf * vf // 1x1 conv
            + 2.0 * (K as f64) * co * tf * vf * vf // aggregation
            + 2.0 * co * co * (KT as f64) * tof * vf; // temporal conv
        if let Residual::Conv { .. } = self.res {
            f += 2.0 * ci * co * tof * vf;
        }
        (f, t_out)
    }
}

/// Plain candle temporal conv: zero-pad time, take the `kt` shifted (and strided) views, stack
/// them (the unfold), one batched matmul.
fn plain_tconv(x: &Tensor, w: &Tensor, s: usize, pad: usize) -> Result<Tensor> {
    let (n, c, t, v) = x.dims4()?;
    let (co, _, kt) = w.dims3()?;
    let t_out = (t + 2 * pad - kt) / s + 1;
    // extra tail padding so every strided view can be cut by the reshape trick
    let xp = x.pad_with_zeros(2, pad, pad + s)?;
    let taps = (0..kt)
        .map(|k| {
            let xs = xp.narrow(2, k, s * t_out)?;
            if s == 1 {
                Ok(xs)
            } else {
                xs.reshape((n, c, t_out, s, v))?.narrow(3, 0, 1)?.squeeze(3)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let cols = Tensor::stack(&taps, 2)?.reshape((n, c * kt, t_out * v))?;
    w.reshape((co, c * kt))?
        .broadcast_matmul(&cols)?
        .reshape((n, co, t_out, v))
}

/// The reference network.
pub struct RefStgcn {
    blocks: Vec<Block>,
    fc_w: Var,
    fc_b: Var,
    frames: usize,
    joints: usize,
}

impl RefStgcn {
    /// Deterministic initialisation from `seed`.
    pub fn new(num_class: usize, frames: usize, joints: usize, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let a = adjacency(joints)?;
        let cfg = [
            (3, 64, 1, false),
            (64, 64, 1, true),
            (64, 64, 1, true),
            (64, 128, 2, true),
            (128, 128, 1, true),
            (128, 256, 2, true),
        ];
        let blocks = cfg
            .iter()
            .map(|&(ci, co, s, r)| Block::new(&mut rng, ci, co, s, r, &a))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            blocks,
            fc_w: kaiming(&mut rng, &[num_class, 256], 256)?,
            fc_b: Var::zeros(num_class, DType::F32, &Device::Cpu)?,
            frames,
            joints,
        })
    }

    /// `x`: `(N, M, 3, T, V)` → logits `(N, classes)`.
    pub fn forward(&self, x: &Tensor, path: Path, train: bool) -> Result<Tensor> {
        let (n, m, c, t, v) = x.dims5()?;
        let mut h = x.reshape((n * m, c, t, v))?;
        for b in &self.blocks {
            h = b.forward(&h, path, train)?;
        }
        let h = h.mean(D::Minus1)?.mean(D::Minus1)?; // (N·M, C)
        let ch = h.dim(1)?;
        let h = h.reshape((n, m, ch))?.mean(1)?;
        h.matmul(&p(&self.fc_w, train).t()?)?
            .broadcast_add(&p(&self.fc_b, train))
    }

    pub fn vars(&self) -> Vec<&Var> {
        let mut v: Vec<&Var> = self.blocks.iter().flat_map(|b| b.vars()).collect();
        v.push(&self.fc_w);
        v.push(&self.fc_b);
        v
    }

    pub fn num_params(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Forward FLOPs for one sample with `persons` skeletons (convolutions, aggregation, classifier).
    pub fn flops_per_sample(&self, persons: usize) -> f64 {
        let (mut t, v) = (self.frames, self.joints);
        let mut total = 0.0;
        for b in &self.blocks {
            let (f, to) = b.flops(t, v);
            total += f;
            t = to;
        }
        let classes = self.fc_b.dim(0).unwrap_or(0) as f64;
        total * persons as f64 + 2.0 * 256.0 * classes
    }
}
