//! Optimisers and learning-rate schedules. candle's SGD has no momentum, so SGD with
//! (Nesterov) momentum is written here with PyTorch's semantics (dampening 0, weight decay
//! added to the gradient), which is what the CTR-GCN family trains with.

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Multiply by `gamma` at each epoch in `steps`.
    Step,
    /// Cosine from the base rate to zero over the epochs after warm-up.
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub warmup_epochs: usize,
    pub schedule: Schedule,
    pub steps: Vec<usize>,
    pub gamma: f64,
}

impl Default for OptimConfig {
    /// CTR-GCN's recipe: SGD, Nesterov momentum 0.9, lr 0.1, weight decay 4e-4, 5 warm-up
    /// epochs, decay by 0.1 at epochs 35 and 55 (of 65).
    fn default() -> Self {
        OptimConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 4e-4,
            warmup_epochs: 5,
            schedule: Schedule::Step,
            steps: vec![35, 55],
            gamma: 0.1,
        }
    }
}

impl OptimConfig {
    /// Learning rate for a (fractional) epoch position `epoch + step/steps_per_epoch`,
    /// with linear warm-up as in CTR-GCN.
    pub fn lr_at(
        &self,
        epoch: usize,
        step_in_epoch: usize,
        steps_per_epoch: usize,
        total_epochs: usize,
    ) -> f64 {
        let pos = epoch as f64 + step_in_epoch as f64 / steps_per_epoch.max(1) as f64;
        if (epoch) < self.warmup_epochs {
            return self.lr * (pos + 1.0).min(self.warmup_epochs as f64)
                / self.warmup_epochs as f64;
        }
        match self.schedule {
            Schedule::Step => {
                let n = self.steps.iter().filter(|&&s| epoch >= s).count();
                self.lr * self.gamma.powi(n as i32)
            }
            Schedule::Cosine => {
                let span = (total_epochs.saturating_sub(self.warmup_epochs)).max(1) as f64;
                let p = ((pos - self.warmup_epochs as f64) / span).clamp(0.0, 1.0);
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

/// An optimiser over a fixed list of variables whose state can be saved and restored, so
/// `--resume` continues exactly.
pub struct Optimizer {
    cfg: OptimConfig,
    vars: Vec<(String, Var)>,
    /// Momentum buffers (SGD) or first moments (AdamW), by variable.
    m: Vec<Option<Tensor>>,
    /// Second moments (AdamW only).
    v: Vec<Option<Tensor>>,
    step: u64,
}

impl Optimizer {
    /// `vars` must be in a stable order (e.g. sorted by name) for state files to line up.
    pub fn new(cfg: OptimConfig, vars: Vec<(String, Var)>) -> Self {
        let n = vars.len();
        Optimizer {
            cfg,
            vars,
            m: vec![None; n],
            v: vec![None; n],
            step: 0,
        }
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Detached: `p` is a tracked Var, so `g + p·wd` and every momentum buffer built on it
            // would carry an autograd graph reaching back through all earlier buffers, keeping
            // every step's update tensors alive (about 2.5 MB a step on the CPU configs, 1.5 GB
            // by the end of a NW-UCLA run).
            let p = &var.as_tensor().detach();
            let g = &g.detach();
            match self.cfg.kind {
                OptimizerKind::Sgd => {
                    let g = if self.cfg.weight_decay != 0.0 {
                        (g + (p * self.cfg.weight_decay)?)?
                    } else {
                        g.clone()
                    };
                    let d = if self.cfg.momentum != 0.0 {
                        let buf = match &self.m[i] {
                            Some(b) => ((b * self.cfg.momentum)? + &g)?,
                            None => g.clone(),
                        };
                        let d = if self.cfg.nesterov {
                            (&g + (&buf * self.cfg.momentum)?)?
                        } else {
                            buf.clone()
                        };
                        self.m[i] = Some(buf);
                        d
                    } else {
                        g
                    };
                    var.set(&(p - (d * lr)?)?)?;
                }
                OptimizerKind::Adamw => {
                    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
                    let m = match &self.m[i] {
                        Some(m) => ((m * b1)? + (g * (1.0 - b1))?)?,
                        None => (g * (1.0 - b1))?,
                    };
                    let v = match &self.v[i] {
                        Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                        None => (g.sqr()? * (1.0 - b2))?,
                    };
                    let t = self.step as i32;
                    let mhat = (&m / (1.0 - b1.powi(t)))?;
                    let vhat = (&v / (1.0 - b2.powi(t)))?;
                    let upd = (mhat / (vhat.sqrt()? + eps)?)?;
                    let decayed = (p * (1.0 - lr * self.cfg.weight_decay))?;
                    var.set(&(decayed - (upd * lr)?)?)?;
                    self.m[i] = Some(m);
                    self.v[i] = Some(v);
                }
            }
        }
        Ok(())
    }

    /// Optimiser state as named tensors (for the checkpoint); absent buffers are omitted.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            if let Some(m) = &self.m[i] {
                out.push((format!("opt.m.{name}"), m.clone()));
            }
            if let Some(v) = &self.v[i] {
                out.push((format!("opt.v.{name}"), v.clone()));
            }
        }
        out
    }

    pub fn load_state(&mut self, get: impl Fn(&str) -> Option<Tensor>, step: u64) {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            self.m[i] = get(&format!("opt.m.{name}"));
            self.v[i] = get(&format!("opt.v.{name}"));
        }
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The optimiser's buffers hold values, not autograd graphs: a buffer that tracked its ops
    /// would keep every earlier step's buffers alive (memory growing with every step).
    #[test]
    fn buffers_do_not_track_the_graph() -> Result<()> {
        let dev = Device::Cpu;
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adamw] {
            let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &dev)?)?;
            let cfg = OptimConfig {
                kind,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.01,
                ..Default::default()
            };
            let mut opt = Optimizer::new(cfg, vec![("p".into(), var.clone())]);
            for _ in 0..3 {
                let grads = var.as_tensor().sqr()?.sum_all()?.backward()?;
                opt.step(&grads, 0.1)?;
            }
            let state = opt.state();
            assert!(!state.is_empty());
            for (name, t) in state {
                assert!(!t.track_op(), "{kind:?}: {name} tracks its ops");
            }
        }
        Ok(())
    }

    /// Replays `torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)` on
    /// `(p**2).sum()` for three steps, written out per coordinate from PyTorch's documented rule.
    #[test]
    fn sgd_nesterov_matches_pytorch_rule() -> Result<()> {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &dev)?)?;
        let cfg = OptimConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut opt = Optimizer::new(cfg, vec![("p".into(), var.clone())]);
        // Independent scalar replay of PyTorch's update for each coordinate.
        let mut expect = [1.0f64, -2.0];
        let mut buf = [0.0f64; 2];
        for step in 0..3 {
            let loss = var.as_tensor().sqr()?.sum_all()?;
            let grads = loss.backward()?;
            opt.step(&grads, 0.1)?;
            for k in 0..2 {
                let g = 2.0 * expect[k] + 0.01 * expect[k];
                buf[k] = if step == 0 { g } else { 0.9 * buf[k] + g };
                expect[k] -= 0.1 * (g + 0.9 * buf[k]);
            }
        }
        let got = var.as_tensor().to_vec1::<f64>()?;
        for k in 0..2 {
            assert!((got[k] - expect[k]).abs() < 1e-12, "{got:?} vs {expect:?}");
        }
        Ok(())
    }

    #[test]
    fn warmup_then_steps() {
        let c = OptimConfig::default();
        assert!((c.lr_at(0, 0, 10, 65) - 0.02).abs() < 1e-12);
        assert!((c.lr_at(4, 9, 10, 65) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(10, 0, 10, 65) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(40, 0, 10, 65) - 0.01).abs() < 1e-12);
        assert!((c.lr_at(60, 0, 10, 65) - 0.001).abs() < 1e-12);
        let cos = OptimConfig {
            schedule: Schedule::Cosine,
            ..Default::default()
        };
        assert!(cos.lr_at(64, 10, 10, 65) < 1e-6);
    }
}
