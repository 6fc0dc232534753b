//! Finite-difference gradient checks in f64 on CPU, and a tiny overfit run with plain SGD.
mod common;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use crossglg_model::heads::{CrossModal, InteractionBlock, Jid};
use crossglg_model::infogcn::InfoBottleneck;
use crossglg_model::loss::{calibration, cross_entropy};
use crossglg_model::{
    build_seeded, trainable_vars, CrossGlgConfig, EncoderKind, Guidance, InfoGcnOptions,
    LossWeights, SeededVarMap,
};

fn randn(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| {
            let h = (i as u64 + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(31);
            let h = h ^ (h >> 29);
            (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn set_elem(var: &Var, i: usize, value: f64) {
    let mut v: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    v[i] = value;
    let t = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
    var.set(&t).unwrap();
}

/// Compares `backward` gradients with central differences on up to `per_var` entries of every
/// variable. Returns how many entries were checked.
fn grad_check(vars: &[(String, Var)], per_var: usize, f: &dyn Fn() -> Tensor) -> usize {
    let loss = f();
    let grads = loss.backward().unwrap();
    let eps: f64 = std::env::var("GRAD_EPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1e-6);
    let mut checked = 0;
    for (name, var) in vars {
        let n = var.elem_count();
        let analytic: Vec<f64> = match grads.get(var) {
            Some(g) => g.flatten_all().unwrap().to_vec1().unwrap(),
            None => vec![0.0; n],
        };
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for j in 0..per_var.min(n) {
            let i = (j * 7919 + 3) % n;
            set_elem(var, i, base[i] + eps);
            let lp: f64 = f().to_scalar().unwrap();
            set_elem(var, i, base[i] - eps);
            let lm: f64 = f().to_scalar().unwrap();
            set_elem(var, i, base[i]);
            let numeric = (lp - lm) / (2.0 * eps);
            let a = analytic[i];
            let tol = 1e-5 + 1e-4 * numeric.abs().max(a.abs());
            assert!(
                (numeric - a).abs() <= tol,
                "{name}[{i}]: analytic {a:e} vs numeric {numeric:e}"
            );
            checked += 1;
        }
    }
    checked
}

fn vars_of(vm: &VarMap) -> Vec<(String, Var)> {
    trainable_vars(vm)
}

#[test]
fn grad_jid() {
    let vm = VarMap::new();
    let vb = SeededVarMap::var_builder(&vm, 1, DType::F64, &Device::Cpu);
    let jid = Jid::new(6, 5, vb.pp("jid")).unwrap();
    let f_pre = Var::from_tensor(&randn(&[4, 6, 3, 5], 2, DType::F64)).unwrap(); // N·M=4, M=2
    let w = randn(&[2, 5], 3, DType::F64);
    let mut vars = vars_of(&vm);
    vars.push(("f_pre".into(), f_pre.clone()));
    let f = || {
        let k = jid.forward(f_pre.as_tensor(), 2).unwrap();
        (k * &w).unwrap().sum_all().unwrap()
    };
    assert!(grad_check(&vars, 6, &f) > 20);
}

#[test]
fn grad_interaction_block_and_branch() {
    let vm = VarMap::new();
    let vb = SeededVarMap::var_builder(&vm, 4, DType::F64, &Device::Cpu);
    for residual in [true, false] {
        let block =
            InteractionBlock::new(8, 2, 2, residual, vb.pp(format!("block{residual}"))).unwrap();
        let text = Var::from_tensor(&randn(&[2, 4, 8], 5, DType::F64)).unwrap();
        let skel = Var::from_tensor(&randn(&[2, 5, 8], 6, DType::F64)).unwrap();
        let w = randn(&[2, 4, 8], 7, DType::F64);
        let mut vars: Vec<_> = vars_of(&vm)
            .into_iter()
            .filter(|(n, _)| n.starts_with(&format!("block{residual}")))
            .collect();
        vars.push(("text".into(), text.clone()));
        vars.push(("skel".into(), skel.clone()));
        let f = || {
            let y = block.forward(text.as_tensor(), skel.as_tensor()).unwrap();
            (y * &w).unwrap().sum_all().unwrap()
        };
        assert!(grad_check(&vars, 4, &f) > 50);
    }

    let vm = VarMap::new();
    let vb = SeededVarMap::var_builder(&vm, 8, DType::F64, &Device::Cpu);
    let branch = CrossModal::new(6, 5, 4, 8, 2, 1, 2, true, 3, vb.pp("cross")).unwrap();
    let text = randn(&[2, 3, 6], 9, DType::F64);
    let joints = Var::from_tensor(&randn(&[2, 4, 5], 10, DType::F64)).unwrap();
    let w = randn(&[2, 3], 11, DType::F64);
    let mut vars = vars_of(&vm);
    vars.push(("joints".into(), joints.clone()));
    let f = || {
        let g = branch.forward(&text, joints.as_tensor()).unwrap();
        (g * &w).unwrap().sum_all().unwrap()
    };
    assert!(grad_check(&vars, 3, &f) > 50);
}

/// Without the text residual the branch cannot read the class off its text: when every
/// skeleton token is the same (nothing to attend to), its output no longer depends on the text.
/// With the residual it does.
#[test]
fn branch_without_text_residual_needs_the_skeleton() {
    let spread = |residual: bool| {
        let vm = VarMap::new();
        let vb = SeededVarMap::var_builder(&vm, 8, DType::F64, &Device::Cpu);
        let branch = CrossModal::new(6, 5, 4, 8, 2, 2, 2, residual, 3, vb.pp("cross")).unwrap();
        // One skeleton feature repeated over joints, and the joint embedding zeroed.
        let one = randn(&[1, 1, 5], 10, DType::F64);
        let joints = one.broadcast_as((1, 4, 5)).unwrap().contiguous().unwrap();
        vm.data()
            .lock()
            .unwrap()
            .get("cross.joint_pos")
            .unwrap()
            .set(&Tensor::zeros((1, 4, 8), DType::F64, &Device::Cpu).unwrap())
            .unwrap();
        // Two different texts (this file's `randn` only varies with large seed changes).
        let t1 = randn(&[1, 3, 6], 1, DType::F64);
        let t2 = t1.flip(&[2]).unwrap().affine(-0.7, 0.2).unwrap();
        let a = branch.forward(&t1, &joints).unwrap();
        let b = branch.forward(&t2, &joints).unwrap();
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    assert!(spread(true) > 1e-3, "{}", spread(true));
    assert!(spread(false) < 1e-9, "{}", spread(false));
}

#[test]
fn grad_losses() {
    let k = Var::from_tensor(&randn(&[3, 5], 1, DType::F64)).unwrap();
    let gt = randn(&[3, 5], 2, DType::F64);
    let vars = vec![("k".to_string(), k.clone())];
    grad_check(&vars, 15, &|| calibration(k.as_tensor(), &gt).unwrap());

    let logits = Var::from_tensor(&randn(&[4, 3], 3, DType::F64)).unwrap();
    let labels = Tensor::new(&[0u32, 2, 1, 2], &Device::Cpu).unwrap();
    let vars = vec![("logits".to_string(), logits.clone())];
    grad_check(&vars, 12, &|| {
        cross_entropy(logits.as_tensor(), &labels).unwrap()
    });

    let vm = VarMap::new();
    let vb = SeededVarMap::var_builder(&vm, 0, DType::F64, &Device::Cpu);
    let ib = InfoBottleneck::new(6, 3, &InfoGcnOptions::default(), vb.pp("ib")).unwrap();
    let z = Var::from_tensor(&randn(&[4, 6], 4, DType::F64)).unwrap();
    let vars = vec![("z".to_string(), z.clone())];
    grad_check(&vars, 24, &|| {
        let (mmd, l2) = ib.loss_terms(z.as_tensor(), &labels).unwrap();
        (mmd + (l2 * 0.3).unwrap()).unwrap()
    });
    // the IB head itself (eval mode: z = mu)
    let g = Var::from_tensor(&randn(&[4, 6], 5, DType::F64)).unwrap();
    let mut vars = vars_of(&vm);
    vars.push(("g".into(), g.clone()));
    grad_check(&vars, 3, &|| {
        let lat = ib.forward(g.as_tensor(), false).unwrap();
        let (mmd, l2) = ib.loss_terms(&lat.z, &labels).unwrap();
        (mmd + l2).unwrap()
    });
}

/// Whole tiny models (encoder + JID re-weighting + cross-modal branch + shared classifier),
/// every encoder, in f64. BatchNorm runs in train mode (batch statistics); InfoGCN in eval mode
/// because its training latent is sampled.
#[test]
fn grad_full_tiny_models() {
    for kind in [
        EncoderKind::StGcn,
        EncoderKind::CtrGcn,
        EncoderKind::InfoGcn,
    ] {
        let mut cfg = CrossGlgConfig::tiny(kind, 3, 4);
        cfg.encoder.blocks.truncate(3);
        cfg.encoder.blocks[2].channels = 16;
        cfg.jid.after_block = 1;
        let (vm, model) = build_seeded(&cfg, &common::toy(), 5, DType::F64, &Device::Cpu).unwrap();
        let x = randn(&[2, 3, 6, 6, 2], 12, DType::F64);
        let text = randn(&[2, 6, 4], 13, DType::F64);
        let labels = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let k_gt = (randn(&[2, 6], 14, DType::F64).abs().unwrap() * 0.3).unwrap();
        let train = kind != EncoderKind::InfoGcn;
        let vars = vars_of(&vm);
        // The graph convs' last BN starts at gamma = 1e-6, which puts many pre-ReLU values
        // within a finite-difference step of the kink; move every BN scale to ~1 first.
        // Zero biases on ReLU outputs also leave exact zeros at ReLU kinks in eval mode, so
        // give every bias a small distinct value.
        for (i, (name, var)) in vars.iter().enumerate() {
            if name.ends_with("bn.weight") {
                let ones = (var.ones_like().unwrap() * 1.1).unwrap();
                var.set(&ones).unwrap();
            } else if name.ends_with("bias") {
                let b = (randn(var.dims(), 100 + i as u64, DType::F64) * 0.05).unwrap();
                var.set(&b).unwrap();
            }
        }
        let f = || {
            let out = model.forward_train(&x, Some(&text), train).unwrap();
            model.loss(&out, &labels, Some(&k_gt)).unwrap().total
        };
        let n = grad_check(&vars, 1, &f);
        assert!(n > 40, "{kind:?}: {n}");
    }
}

/// A tiny model with both heads fits 8 fixed samples of 4 classes with plain SGD.
#[test]
fn tiny_model_overfits_eight_samples() {
    overfit(EncoderKind::StGcn, 200, 0.05);
}

/// The same for InfoGCN, whose loss also carries the IB terms and a sampled latent.
#[test]
fn tiny_infogcn_overfits_eight_samples() {
    overfit(EncoderKind::InfoGcn, 200, 0.3);
}

fn overfit(kind: EncoderKind, steps: usize, target: f32) {
    let graph = common::toy();
    let mut cfg = CrossGlgConfig::tiny(kind, 4, 8);
    cfg.guidance = Guidance::Both;
    let (vm, model) = build_seeded(&cfg, &graph, 0, DType::F32, &Device::Cpu).unwrap();
    let x = randn(&[8, 3, 8, 6, 2], 21, DType::F32);
    let labels_v = [0u32, 1, 2, 3, 0, 1, 2, 3];
    let labels = Tensor::new(&labels_v, &Device::Cpu).unwrap();
    let class_text = randn(&[4, 6, 8], 22, DType::F32);
    let class_k: Vec<f32> = (0..4)
        .flat_map(|c| {
            let mut k = [0.02f32; 6];
            k[c] = 0.9;
            k
        })
        .collect();
    let class_k = Tensor::from_vec(class_k, (4, 6), &Device::Cpu).unwrap();
    let text = class_text.index_select(&labels, 0).unwrap();
    let k_gt = class_k.index_select(&labels, 0).unwrap();
    let vars = trainable_vars(&vm);
    let lr = 0.1;
    // L_cal is a mean over N·V entries of softmax outputs, so its gradient is tiny; with the
    // paper's weight 0.5 it takes thousands of steps to fit. The fit test weights it up.
    let weights = LossWeights {
        cal: 20.0,
        ..LossWeights::default()
    };
    let mut first = None;
    let mut first_cal = 0f32;
    let mut first_enc: Vec<f32> = Vec::new();
    let mut last = f32::INFINITY;
    for step in 0..steps {
        let out = model.forward_train(&x, Some(&text), true).unwrap();
        let parts = model
            .loss_with(&out, &labels, Some(&k_gt), &weights)
            .unwrap();
        last = parts.total.to_scalar::<f32>().unwrap();
        if step == 0 {
            first = Some(last);
            first_cal = parts.cal.as_ref().unwrap().to_scalar::<f32>().unwrap();
            first_enc = parts
                .encoder
                .iter()
                .map(|(_, t)| t.to_scalar::<f32>().unwrap())
                .collect();
        }
        let grads = parts.total.backward().unwrap();
        for (_, var) in &vars {
            if let Some(g) = grads.get(var) {
                var.set(&(var.as_tensor() - (g * lr).unwrap()).unwrap())
                    .unwrap();
            }
        }
    }
    let first = first.unwrap();
    assert!(last < 0.1 * first, "weighted loss {first} -> {last}");
    // with the paper's weights (0.5, 0.2) the loss is near zero, and every part went down
    let out = model.forward_train(&x, Some(&text), true).unwrap();
    let parts = model.loss(&out, &labels, Some(&k_gt)).unwrap();
    let total: f32 = parts.total.to_scalar().unwrap();
    let cal: f32 = parts.cal.as_ref().unwrap().to_scalar().unwrap();
    let cross: f32 = parts.cross.as_ref().unwrap().to_scalar().unwrap();
    eprintln!("overfit: {first} -> {:?}", parts.scalars().unwrap());
    assert!(total < target, "{kind:?}: paper-weighted loss {total}");
    assert!(cal < 0.25 * first_cal, "L_cal {first_cal} -> {cal}");
    assert!(cross < 0.05, "L_c {cross}");
    let skel: f32 = parts.skel.to_scalar().unwrap();
    assert!(skel < 0.05, "L_s {skel}");
    // InfoGCN's IB terms (weights 0.1, 1e-4) move slowly but must go down
    for ((name, t), before) in parts.encoder.iter().zip(&first_enc) {
        let now: f32 = t.to_scalar().unwrap();
        assert!(now < *before, "{name}: {before} -> {now}");
    }
    // the skeleton branch alone classifies the training samples (eval mode)
    let out = model.forward_train(&x, None, false).unwrap();
    let pred: Vec<u32> = out.logits_s.argmax(1).unwrap().to_vec1().unwrap();
    assert_eq!(pred, labels_v);
}
