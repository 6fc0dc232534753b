//! Seeded, device-independent parameter initialisation.
//!
//! candle's CPU generator cannot be seeded, so `VarBuilder::from_varmap` gives different weights
//! on every run. [`SeededVarMap`] is a `VarBuilder` backend that creates missing variables in a
//! [`VarMap`] from a `StdRng` seeded with `(seed, parameter name)`. Each parameter gets its own
//! stream, so the values do not depend on construction order, device or thread count, and the
//! same seed gives bitwise identical weights. Values are drawn in f64 on the host and then
//! converted, so CPU and CUDA models start from the same numbers.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A [`VarMap`] whose missing variables are initialised from a seeded RNG.
#[derive(Clone)]
pub struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SeededVarMap {
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        Self { varmap, seed }
    }

    /// A `VarBuilder` over `varmap` that creates missing variables from `seed`.
    pub fn var_builder(
        varmap: &VarMap,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(Self::new(varmap.clone(), seed)),
            dtype,
            device.clone(),
        )
    }
}

/// FNV-1a: a fixed, portable string hash (std's hasher is not guaranteed stable).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The RNG for one parameter: seeded from the model seed and the parameter's full name.
pub fn param_rng(seed: u64, name: &str) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed ^ fnv1a(name).rotate_left(17))
}

/// Draws the values of `init` for `shape` from `rng`, in f64.
pub fn init_values(init: &Init, shape: &Shape, rng: &mut impl Rng) -> Vec<f64> {
    let n = shape.elem_count();
    match init {
        Init::Const(c) => vec![*c; n],
        Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(*lo..*up)).collect(),
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                mean + stdev * z
            })
            .collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = match fan {
                FanInOut::FanIn => FanInOut::FanIn.for_shape(shape),
                FanInOut::FanOut => FanInOut::FanOut.for_shape(shape),
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
                NormalOrUniform::Normal => (0..n)
                    .map(|_| {
                        let z: f64 = StandardNormal.sample(rng);
                        std * z
                    })
                    .collect(),
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.varmap.data().lock().map_err(|_| {
            candle_core::Error::Msg("VarMap lock poisoned by a panicking thread".into())
        })?;
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let mut rng = param_rng(self.seed, name);
        let values = init_values(&h, &s, &mut rng);
        let t = Tensor::from_vec(values, s, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let data = self.varmap.data().lock().map_err(|_| {
            candle_core::Error::Msg("VarMap lock poisoned by a panicking thread".into())
        })?;
        match data.get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("cannot find tensor {name} in the VarMap"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

/// PyTorch `Conv2d` weight init as the GCN references use it (`conv_init`: Kaiming normal,
/// fan-out).
pub const CONV_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: candle_nn::init::NonLinearity::ReLU,
};

/// Linear weight init: Kaiming normal, fan-in (candle's default for `linear`).
pub const LINEAR_INIT: Init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
