//! Skeleton encoders (ST-GCN, CTR-GCN, InfoGCN) and the CrossGLG heads on candle.
//!
//! The crate knows no skeleton: the caller builds a [`Graph`] from its layout. Build a model
//! with seeded weights, train with [`CrossGlg::forward_train`] + [`CrossGlg::loss`], embed with
//! [`CrossGlg::embed`]:
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use crossglg_model::{build_seeded, CrossGlgConfig, EncoderKind, Graph};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let graph = Graph::new(5, vec![(1, 0), (2, 1), (3, 2), (4, 3)], 2)?;
//! let cfg = CrossGlgConfig::tiny(EncoderKind::CtrGcn, 4, 8);
//! let (_varmap, model) = build_seeded(&cfg, &graph, 7, DType::F32, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 3, 8, 5, 2), DType::F32, &Device::Cpu)?; // N, C, T, V, M
//! let text = Tensor::zeros((2, 5, 8), DType::F32, &Device::Cpu)?; // N, J, D_text
//! let out = model.forward_train(&x, Some(&text), true)?;
//! let labels = Tensor::new(&[0u32, 3], &Device::Cpu)?;
//! let k_gt = Tensor::full(0.2f32, (2, 5), &Device::Cpu)?;
//! let loss = model.loss(&out, &labels, Some(&k_gt))?;
//! assert_eq!(loss.total.dims(), &[] as &[usize]);
//! assert_eq!(model.embed(&x)?.dims(), &[2, 32]);
//! # Ok(()) }
//! ```

pub mod crossglg;
pub mod ctrgcn;
pub mod device;
pub mod encoder;
pub mod encoder_config;
pub mod error;
pub mod flops;
pub mod graph;
pub mod heads;
pub mod infogcn;
pub mod init;
pub mod layers;
pub mod loss;
pub mod stgcn;

pub use crossglg::{
    build_seeded, frozen, is_buffer, param_count, set_text_centers, trainable_vars, CrossForm,
    CrossGlg, CrossGlgConfig, Guidance, InteractionConfig, JidConfig, Outputs, Reweight, StepText,
    TextSide,
};
pub use device::{device_from, DeviceError};
pub use encoder::Encoder;
pub use encoder_config::{BlockSpec, EncoderConfig, EncoderKind, InfoGcnOptions};
pub use error::{ModelError, Result, UnknownName};
pub use flops::{encoder_macs, forward_flops_per_sample};
pub use graph::Graph;
pub use heads::{ClassifierConfig, ClassifierKind, TextLogits};
pub use infogcn::Latent;
pub use init::SeededVarMap;
pub use loss::{CalLoss, LossParts, LossWeights};
