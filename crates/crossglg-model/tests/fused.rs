//! The fused CPU kernels (default for f32 on the CPU), the portable forms (meant for GPUs) and
//! the plain candle path give the same logits, losses, parameter gradients and running
//! statistics for whole tiny models.
mod common;
use candle_core::{DType, Device, Tensor};
use crossglg_model::layers::Kernels;
use crossglg_model::{
    build_seeded, trainable_vars, CrossGlg, CrossGlgConfig, EncoderKind, Guidance,
};
use std::time::Instant;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let vals: Vec<f32> = (0..n)
        .map(|i| {
            let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            ((h >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    Tensor::from_vec(vals, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    values(t).iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// max |a − b| ≤ tol · max(max |b|, floor): relative to the tensor's scale, since tiny entries
/// of a large tensor only carry absolute f32 error. `floor` covers tensors that are zero in
/// exact arithmetic (e.g. gradients of conv biases that feed a training-mode BatchNorm).
fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32, floor: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (values(a), values(b));
    // `max` below skips NaN: a value that is not finite where the reference is fails here
    if let Some(i) = (0..a.len()).find(|&i| !a[i].is_finite() && b[i].is_finite()) {
        panic!("{what}: {} at {i} where the reference has {}", a[i], b[i]);
    }
    let scale = b.iter().fold(floor.max(1e-6), |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= tol * scale,
        "{what}: max diff {diff} vs scale {scale}"
    );
}

struct Step {
    /// Eval-mode embedding after the step (BN with the updated running statistics).
    embedding: Tensor,
    logits: Vec<Tensor>,
    loss: Tensor,
    grads: Vec<(String, Tensor)>,
    state: Vec<(String, Tensor)>,
}

fn step(kind: EncoderKind, guidance: Guidance, kernels: Kernels) -> Step {
    let mut cfg = CrossGlgConfig::tiny(kind, 4, 8);
    cfg.guidance = guidance;
    cfg.encoder.kernels = kernels;
    let (vm, model): (_, CrossGlg) =
        build_seeded(&cfg, &common::ntu25(), 3, DType::F32, &Device::Cpu).unwrap();
    // CTR-GCN's α and the learned topology offsets start at zero, which would leave the
    // topology-refinement path without gradient: give them values.
    for (name, var) in vm.data().lock().unwrap().iter() {
        // seeded by the name: the map's iteration order differs between the two models
        let seed = name
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
        if name.ends_with("alpha") {
            var.set(&(var.ones_like().unwrap() * 0.7).unwrap()).unwrap();
        } else if name.ends_with("_delta") {
            var.set(&(randn(var.dims(), seed) * 0.2).unwrap()).unwrap();
        }
    }
    // odd T exercises the stride-2 phases; 25 joints as in NTU
    let x = randn(&[3, 3, 9, 25, 2], 1);
    let text = randn(&[3, 25, 8], 2);
    let labels = Tensor::new(&[0u32, 3, 1], &Device::Cpu).unwrap();
    let k_gt = (randn(&[3, 25], 4).abs().unwrap() * 0.1).unwrap();
    let out = model.forward_train(&x, Some(&text), true).unwrap();
    let loss = model.loss(&out, &labels, Some(&k_gt)).unwrap().total;
    let gs = loss.backward().unwrap();
    let mut logits = vec![out.logits_s.clone()];
    logits.extend(out.logits_c.clone());
    let grads = trainable_vars(&vm)
        .into_iter()
        .map(|(name, v)| {
            let g = gs
                .get(v.as_tensor())
                .cloned()
                .unwrap_or_else(|| v.zeros_like().unwrap());
            (name, g)
        })
        .collect();
    let mut state: Vec<(String, Tensor)> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    state.sort_by(|a, b| a.0.cmp(&b.0));
    let embedding = model.embed(&x).unwrap();
    Step {
        embedding,
        logits,
        loss,
        grads,
        state,
    }
}

#[test]
fn fused_and_plain_paths_agree_for_whole_tiny_models() {
    for kind in [
        EncoderKind::StGcn,
        EncoderKind::CtrGcn,
        EncoderKind::InfoGcn,
    ] {
        for (guidance, other) in [Guidance::None, Guidance::Both]
            .into_iter()
            .flat_map(|g| [Kernels::Fused, Kernels::Portable].map(|k| (g, k)))
        {
            let tag = format!("{kind:?}/{guidance:?}/{other:?}");
            let f = step(kind, guidance, other);
            let p = step(kind, guidance, Kernels::Plain);
            assert_eq!(f.logits.len(), p.logits.len(), "{tag}");
            // other summation orders: proof that the two models took different paths
            assert_ne!(
                values(&f.logits[0]),
                values(&p.logits[0]),
                "{tag}: both models took the same path"
            );
            for (a, b) in f.logits.iter().zip(&p.logits) {
                assert_close(&format!("{tag} logits"), a, b, 1e-4, 1e-3);
            }
            assert_close(&format!("{tag} loss"), &f.loss, &p.loss, 1e-4, 1e-3);
            assert_close(
                &format!("{tag} eval embedding"),
                &f.embedding,
                &p.embedding,
                1e-4,
                1e-3,
            );
            assert_eq!(f.grads.len(), p.grads.len());
            let global = p.grads.iter().fold(0f32, |m, (_, g)| m.max(max_abs(g)));
            let mut nonzero = 0;
            for ((name, a), (_, b)) in f.grads.iter().zip(&p.grads) {
                let what = format!("{tag} grad {name}");
                if max_abs(b) < 1e-4 * global {
                    // Zero in exact arithmetic (a bias feeding a training-mode BatchNorm): both
                    // paths must give rounding noise only.
                    assert!(
                        max_abs(a) < 1e-4 * global,
                        "{what}: {} vs {global}",
                        max_abs(a)
                    );
                    continue;
                }
                assert_close(&what, a, b, 1e-4, 1e-2 * global);
                if values(b).iter().any(|v| *v != 0.0) {
                    nonzero += 1;
                }
            }
            assert!(nonzero > 20, "{tag}: only {nonzero} non-zero gradients");
            // running statistics were updated identically (and the parameters untouched)
            assert_eq!(f.state.len(), p.state.len());
            for ((name, a), (_, b)) in f.state.iter().zip(&p.state) {
                assert_close(&format!("{tag} state {name}"), a, b, 1e-4, 1e-3);
            }
        }
    }
}

/// The inference copy (no autograd graph) computes the same embeddings as the trained model,
/// with the running statistics as they were when it was made (up to rounding where it takes
/// inference-only kernels).
#[test]
fn frozen_model_embeds_like_the_trained_one() {
    let graph = common::ntu25();
    for kind in [
        EncoderKind::StGcn,
        EncoderKind::CtrGcn,
        EncoderKind::InfoGcn,
    ] {
        let cfg = CrossGlgConfig::tiny(kind, 4, 8);
        let (vm, model) = build_seeded(&cfg, &graph, 5, DType::F32, &Device::Cpu).unwrap();
        // every parameter off its initial value: conv biases, BN affine parameters, edge
        // importance and α start at constants that would hide folding mistakes
        for (name, var) in vm.data().lock().unwrap().iter() {
            if crossglg_model::is_buffer(name) {
                continue;
            }
            let seed = name
                .bytes()
                .fold(11u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
            let noise = (randn(var.dims(), seed) * 0.2).unwrap();
            var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
        }
        let x = randn(&[2, 3, 8, 25, 2], 6);
        // move the running statistics away from their initial values first
        model.forward_train(&x, None, true).unwrap();
        let frozen = crossglg_model::frozen(&cfg, &graph, &vm).unwrap();
        let (a, b) = (model.embed(&x).unwrap(), frozen.embed(&x).unwrap());
        // the frozen model folds batch norms into the convolutions and runs 9-tap ones
        // through Winograd: other rounding, and proof those inference kernels ran
        assert_close(&format!("{kind:?}"), &b, &a, 1e-4, 1e-3);
        assert_ne!(
            values(&a),
            values(&b),
            "{kind:?}: the inference kernels were not taken"
        );
        // on one thread: kernels that parallelise over samples take their per-sample paths
        // (InfoGCN's fused graph conv) whatever the machine's core count
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let c = one.install(|| frozen.embed(&x)).unwrap();
        assert_close(&format!("{kind:?} on one thread"), &c, &a, 1e-4, 1e-3);
    }
}

#[test]
fn fused_path_is_only_for_f32_on_cpu() {
    let f32t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let f64t = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    assert!(Kernels::Fused.applies(&[&f32t, &f32t]));
    assert!(!Kernels::Fused.applies(&[&f32t, &f64t]));
    assert!(!Kernels::Plain.applies(&[&f32t]));
    assert_eq!("plain".parse::<Kernels>().unwrap(), Kernels::Plain);
    assert_eq!("Portable".parse::<Kernels>().unwrap(), Kernels::Portable);
    assert!(!Kernels::Portable.applies(&[&f32t]) && Kernels::Portable.device_forms(&[&f32t]));
    // Fused takes the device forms where its kernels do not run
    assert!(!Kernels::Fused.device_forms(&[&f32t]) && Kernels::Fused.device_forms(&[&f64t]));
    assert!(!Kernels::Plain.device_forms(&[&f64t]));
    assert!("fast".parse::<Kernels>().is_err());
}

/// Forward / backward time of one tiny training step (batch 16, T = 32, 25 joints, 2 persons)
/// and of the standard presets, fused vs plain. Measurement only:
/// `cargo test -p crossglg-model --release --test fused -- --ignored --nocapture`
#[test]
#[ignore]
fn time_training_step() {
    let standard = std::env::var_os("CROSSGLG_TIME_STANDARD").is_some();
    let kinds = [
        EncoderKind::StGcn,
        EncoderKind::CtrGcn,
        EncoderKind::InfoGcn,
    ];
    let only = std::env::var("CROSSGLG_TIME_KIND").ok();
    for kind in kinds {
        if only
            .as_ref()
            .is_some_and(|k| k.parse::<EncoderKind>() != Ok(kind))
        {
            continue;
        }
        let paths: &[Kernels] = match std::env::var("CROSSGLG_TIME_PATH").as_deref() {
            Ok("fused") => &[Kernels::Fused],
            Ok("plain") => &[Kernels::Plain],
            _ => &[Kernels::Plain, Kernels::Fused],
        };
        for &kernels in paths {
            let (mut cfg, t) = if standard {
                (CrossGlgConfig::standard(kind, 60), 64)
            } else {
                let mut c = CrossGlgConfig::tiny(kind, 60, 384);
                c.guidance = Guidance::None;
                (c, 32)
            };
            cfg.encoder.kernels = kernels;
            let (_vm, m) =
                build_seeded(&cfg, &common::ntu25(), 0, DType::F32, &Device::Cpu).unwrap();
            let x = randn(&[16, 3, t, 25, 2], 7);
            let text = randn(&[16, 25, 384], 8);
            let labels = Tensor::from_vec((0..16u32).collect(), 16, &Device::Cpu).unwrap();
            let k_gt = Tensor::full(0.04f32, (16, 25), &Device::Cpu).unwrap();
            let reps = if standard { 1 } else { 3 };
            let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
            for _ in 0..reps + 1 {
                let t0 = Instant::now();
                let out = m.forward_train(&x, Some(&text), true).unwrap();
                let loss = m.loss(&out, &labels, Some(&k_gt)).unwrap().total;
                let t1 = Instant::now();
                loss.backward().unwrap();
                let t2 = Instant::now();
                fwd = fwd.min((t1 - t0).as_secs_f64());
                bwd = bwd.min((t2 - t1).as_secs_f64());
            }
            eprintln!(
                "{kind:?} {} T={t} {kernels:?}: forward {:.3} s, backward {:.3} s",
                if standard { "standard" } else { "tiny" },
                fwd,
                bwd
            );
        }
    }
}
