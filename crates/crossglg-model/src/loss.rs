//! CrossGLG objective: `L = L_s + w_cal·L_cal + w_c·L_c + encoder terms` (METHOD.md §2; the
//! default weights 0.5 / 0.2 are the paper's, InfoGCN's 0.1 / 1e-4 are its published ones).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// Loss weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossWeights {
    /// Weight of `L_cal = MSE(k_out, k_gt)` (0.5).
    pub cal: f64,
    /// Weight of `L_c`, the cross-entropy of the cross-modal branch (0.2).
    pub cross: f64,
    /// InfoGCN `lambda_2`: class-mean-to-prior MSE (0.1).
    pub ib_mmd: f64,
    /// InfoGCN `lambda_1`: norm of the batch-mean latent (1e-4).
    pub ib_l2: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            cal: 0.5,
            cross: 0.2,
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
    /// Encoder terms by name (InfoGCN: `ib_mmd`, `ib_l2`), unweighted.
    pub encoder: Vec<(String, Tensor)>,
}

impl LossParts {
    /// `(name, value)` pairs: `total`, `skel`, `cal`, `cross` and the encoder terms (reads the
    /// scalars back to the host).
    pub fn scalars(&self) -> Result<Vec<(String, f64)>> {
        let mut out = vec![
            ("total".to_string(), scalar(&self.total)?),
            ("skel".to_string(), scalar(&self.skel)?),
        ];
        if let Some(c) = &self.cal {
            out.push(("cal".into(), scalar(c)?));
        }
        if let Some(c) = &self.cross {
            out.push(("cross".into(), scalar(c)?));
        }
        for (n, t) in &self.encoder {
            out.push((n.clone(), scalar(t)?));
        }
        Ok(out)
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
