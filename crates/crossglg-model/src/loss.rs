//! CrossGLG objective: `L = L_s + w_cal·L_cal + w_c·L_c + encoder terms` (METHOD.md §2; the
//! default weights 0.5 / 0.2 are the paper's, InfoGCN's 0.1 / 1e-4 are its published ones).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// The form of the key-joint loss `L_cal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CalLoss {
    /// The paper's `MSE(k_out, k_gt)`, averaged over all `N·V` entries. With `V` = 20 joints
    /// and values near `1/V`, its gradient per entry is about 1e-4 (docs/results.md).
    #[default]
    Mse,
    /// Per sample `KL(k_gt ‖ k_out)` between the two distributions over joints, averaged over
    /// the batch: about 100× the MSE's gradient, and it does not shrink with more joints.
    Kl,
}

/// Loss weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossWeights {
    /// Weight of `L_cal` (0.5).
    pub cal: f64,
    /// Form of `L_cal`: the paper's `mse` or a per-sample `kl`.
    pub cal_form: CalLoss,
    /// Weight of `L_c`, the cross-entropy of the local-to-global branch (0.2).
    pub cross: f64,
    /// Weight of the distillation of the text-target branch's class scores into the skeleton
    /// branch (0: off; needs `interaction.form = "target"`).
    pub distill: f64,
    /// Temperature of that distillation.
    pub distill_temperature: f64,
    /// InfoGCN `lambda_2`: class-mean-to-prior MSE (0.1).
    pub ib_mmd: f64,
    /// InfoGCN `lambda_1`: norm of the batch-mean latent (1e-4).
    pub ib_l2: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            cal: 0.5,
            cal_form: CalLoss::Mse,
            cross: 0.2,
            distill: 0.0,
            distill_temperature: 2.0,
            ib_mmd: 0.1,
            ib_l2: 1e-4,
        }
    }
}

/// The weighted total and every unweighted part, for logging.
#[derive(Debug, Clone)]
pub struct LossParts {
    /// Scalar to call `backward` on.
    pub total: Tensor,
    /// Cross-entropy of the skeleton branch.
    pub skel: Tensor,
    /// `MSE(k_out, k_gt)` when JID is on.
    pub cal: Option<Tensor>,
    /// Cross-entropy of the cross-modal branch when it ran.
    pub cross: Option<Tensor>,
    /// Distillation of the text-target branch into the skeleton branch, when on.
    pub distill: Option<Tensor>,
    /// Encoder terms by name (InfoGCN: `ib_mmd`, `ib_l2`), unweighted.
    pub encoder: Vec<(String, Tensor)>,
}

impl LossParts {
    /// `(name, scalar tensor)` pairs: `total`, `skel`, `cal`, `cross`, `distill` and the encoder
    /// terms, detached and still on the model's device (nothing is read back).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("total".to_string(), self.total.detach()),
            ("skel".to_string(), self.skel.detach()),
        ];
        for (n, t) in [
            ("cal", &self.cal),
            ("cross", &self.cross),
            ("distill", &self.distill),
        ] {
            if let Some(t) = t {
                out.push((n.to_string(), t.detach()));
            }
        }
        out.extend(self.encoder.iter().map(|(n, t)| (n.clone(), t.detach())));
        out
    }

    /// `(name, value)` pairs of [`LossParts::named`] (reads the scalars back to the host).
    pub fn scalars(&self) -> Result<Vec<(String, f64)>> {
        self.named()
            .into_iter()
            .map(|(n, t)| Ok((n, scalar(&t)?)))
            .collect()
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()
}

/// Mean cross-entropy of `logits (N, K)` against `labels (N)` (u32 class indices).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}

/// `L_cal = MSE(k_out, k_gt)`, mean over all `N·V` entries.
///
/// # Shapes
/// `k_out: (N, V)`, `k_gt: (N, V)` -> scalar
pub fn calibration(k_out: &Tensor, k_gt: &Tensor) -> Result<Tensor> {
    if k_out.dims() != k_gt.dims() {
        candle_core::bail!(
            "k_gt has shape {:?} but the joint importance has {:?}",
            k_gt.dims(),
            k_out.dims()
        )
    }
    (k_out - k_gt.to_dtype(k_out.dtype())?.detach())?
        .sqr()?
        .mean_all()
}

/// Mean cross-entropy with an additive margin `m` taken off the true class's logit (CosFace;
/// `m` in logit units, i.e. scale × cosine margin).
pub fn cross_entropy_margin(logits: &Tensor, labels: &Tensor, m: f64) -> Result<Tensor> {
    if m == 0.0 {
        return cross_entropy(logits, labels);
    }
    let (_, k) = logits.dims2()?;
    let onehot =
        candle_nn::encoding::one_hot(labels.clone(), k, 1f32, 0f32)?.to_dtype(logits.dtype())?;
    cross_entropy(&(logits - (onehot * m)?)?, labels)
}

/// `L_cal` as the mean over samples of `KL(k_gt ‖ k_out)` (see [`CalLoss::Kl`]).
///
/// # Shapes
/// `k_out: (N, V)` (rows sum to 1), `k_gt: (N, V)` -> scalar
pub fn calibration_kl(k_out: &Tensor, k_gt: &Tensor) -> Result<Tensor> {
    if k_out.dims() != k_gt.dims() {
        candle_core::bail!(
            "k_gt has shape {:?} but the joint importance has {:?}",
            k_gt.dims(),
            k_out.dims()
        )
    }
    let gt = k_gt.to_dtype(k_out.dtype())?.detach();
    // sum_v gt·(ln gt − ln k); the entropy term is constant but keeps the value a true KL (0 at
    // k = gt). Zero targets contribute nothing (0·ln 0 := 0 via the epsilon).
    let ln_gt = (&gt + 1e-12)?.log()?;
    let ln_k = (k_out + 1e-12)?.log()?;
    (gt * (ln_gt - ln_k)?)?.sum(1)?.mean_all()
}

/// `L_cal` in the configured form.
pub fn calibration_loss(form: CalLoss, k_out: &Tensor, k_gt: &Tensor) -> Result<Tensor> {
    match form {
        CalLoss::Mse => calibration(k_out, k_gt),
        CalLoss::Kl => calibration_kl(k_out, k_gt),
    }
}

/// Knowledge distillation: `T² · mean_n KL(softmax(teacher/T) ‖ softmax(student/T))`, the
/// teacher detached.
///
/// # Shapes
/// `student, teacher: (N, K)` -> scalar
pub fn distillation(student: &Tensor, teacher: &Tensor, t: f64) -> Result<Tensor> {
    if student.dims() != teacher.dims() {
        candle_core::bail!(
            "distillation: student {:?} and teacher {:?} differ in shape",
            student.dims(),
            teacher.dims()
        )
    }
    let p = candle_nn::ops::softmax_last_dim(&(teacher.detach() / t)?)?;
    let log_p = candle_nn::ops::log_softmax(&(teacher.detach() / t)?, candle_core::D::Minus1)?;
    let log_q = candle_nn::ops::log_softmax(&(student / t)?, candle_core::D::Minus1)?;
    (p * (log_p - log_q)?)?.sum(1)?.mean_all()? * (t * t)
}
