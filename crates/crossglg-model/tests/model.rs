//! Shapes, determinism, checkpoint round trip, train/eval behaviour and error paths.
mod common;
use candle_core::{DType, Device, Tensor, D};
use crossglg_model::{
    build_seeded, param_count, CrossGlg, CrossGlgConfig, EncoderKind, Graph, Guidance, Reweight,
};

const KINDS: [EncoderKind; 3] = [
    EncoderKind::StGcn,
    EncoderKind::CtrGcn,
    EncoderKind::InfoGcn,
];
const GUIDANCE: [Guidance; 4] = [Guidance::None, Guidance::G2l, Guidance::L2g, Guidance::Both];

/// Deterministic pseudo-random input `(N, 3, T, V, 2)`.
fn input(n: usize, t: usize, v: usize, salt: u64) -> Tensor {
    let len = n * 3 * t * v * 2;
    let vals: Vec<f32> = (0..len)
        .map(|i| {
            let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
            ((h >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    Tensor::from_vec(vals, (n, 3, t, v, 2), &Device::Cpu).unwrap()
}

/// Text embeddings `(N, 6, 8)`.
fn text(n: usize, salt: u64) -> Tensor {
    input(n, 8, 1, salt).reshape((n, 6, 8)).unwrap()
}

fn build(kind: EncoderKind, guidance: Guidance, seed: u64) -> (candle_nn::VarMap, CrossGlg) {
    let mut cfg = CrossGlgConfig::tiny(kind, 4, 8);
    cfg.guidance = guidance;
    build_seeded(&cfg, &common::toy(), seed, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn output_shapes_for_every_encoder_and_guidance() {
    let (n, t, v) = (2, 9, 6); // odd T exercises the stride-2 padding
    let x = input(n, t, v, 1);
    let text = text(n, 2);
    for kind in KINDS {
        for g in GUIDANCE {
            let (_vm, model) = build(kind, g, 0);
            let out = model.forward_train(&x, Some(&text), true).unwrap();
            assert_eq!(out.logits_s.dims(), &[n, 4], "{kind:?} {g:?}");
            assert_eq!(out.embedding.dims(), &[n, 32]);
            assert_eq!(out.joint_features.dims(), &[n, v, 32]);
            assert_eq!(
                out.logits_c.is_some(),
                g.uses_cross_modal(),
                "{kind:?} {g:?}"
            );
            if let Some(l) = &out.logits_c {
                assert_eq!(l.dims(), &[n, 4]);
            }
            assert_eq!(out.k_out.is_some(), g.uses_jid());
            assert_eq!(out.latent.is_some(), kind == EncoderKind::InfoGcn);
            let blocks = model.encoder().forward_blocks(&x, false).unwrap();
            let widths: Vec<_> = blocks.iter().map(|b| b.dims().to_vec()).collect();
            assert_eq!(
                widths,
                vec![
                    vec![n * 2, 16, 9, v],
                    vec![n * 2, 16, 9, v],
                    vec![n * 2, 32, 5, v],
                    vec![n * 2, 32, 5, v]
                ]
            );
            let e = model.embed(&x).unwrap();
            assert_eq!(e.dims(), &[n, 32]);
            let ji = model.joint_importance(&x).unwrap();
            assert_eq!(ji.is_some(), g.uses_jid());
            if let Some(k) = ji {
                let sums: Vec<f32> = k.sum(D::Minus1).unwrap().to_vec1().unwrap();
                assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
            }
            // the loss runs for every mode
            let labels = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
            let k_gt = Tensor::full(1.0f32 / v as f32, (n, v), &Device::Cpu).unwrap();
            let parts = model.loss(&out, &labels, Some(&k_gt)).unwrap();
            let total: f32 = parts.total.to_scalar().unwrap();
            assert!(total.is_finite());
            let names: Vec<String> = parts.scalars().unwrap().into_iter().map(|p| p.0).collect();
            assert_eq!(names.contains(&"cal".to_string()), g.uses_jid());
            assert_eq!(names.contains(&"cross".to_string()), g.uses_cross_modal());
            assert_eq!(
                names.contains(&"ib_mmd".to_string()),
                kind == EncoderKind::InfoGcn
            );
        }
    }
}

fn all_values(vm: &candle_nn::VarMap) -> Vec<(String, Vec<f32>)> {
    let data = vm.data().lock().unwrap();
    let mut v: Vec<_> = data
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn same_seed_gives_bitwise_identical_weights() {
    for kind in KINDS {
        let (a, _) = build(kind, Guidance::Both, 42);
        let (b, _) = build(kind, Guidance::Both, 42);
        let (c, _) = build(kind, Guidance::Both, 43);
        let (va, vb, vc) = (all_values(&a), all_values(&b), all_values(&c));
        assert_eq!(va.len(), vb.len());
        for ((na, xa), (nb, xb)) in va.iter().zip(&vb) {
            assert_eq!(na, nb);
            let bits_a: Vec<u32> = xa.iter().map(|x| x.to_bits()).collect();
            let bits_b: Vec<u32> = xb.iter().map(|x| x.to_bits()).collect();
            assert_eq!(bits_a, bits_b, "{na}");
        }
        assert_ne!(va, vc, "a different seed must change some weights");
        // order independence: a model with fewer heads shares the encoder weights
        let (d, _) = build(kind, Guidance::None, 42);
        let vd = all_values(&d);
        for (name, x) in &vd {
            let other = va.iter().find(|(n, _)| n == name).expect("same names");
            assert_eq!(&other.1, x, "{name}");
        }
    }
}

#[test]
fn init_kinds_are_sane() {
    let (vm, _) = build(EncoderKind::CtrGcn, Guidance::Both, 3);
    for (name, vals) in all_values(&vm) {
        if name.ends_with("running_var") {
            assert!(vals.iter().all(|&x| x == 1.0), "{name}");
        } else if name.ends_with("running_mean") || name.ends_with(".bias") {
            assert!(vals.iter().all(|&x| x == 0.0), "{name}");
        } else if name.ends_with("gcn1.bn.weight") {
            assert!(vals.iter().all(|&x| x == 1e-6), "{name}");
        } else if name.ends_with("conv.weight") && vals.len() > 50 {
            let mean = vals.iter().sum::<f32>() / vals.len() as f32;
            let var = vals.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / vals.len() as f32;
            assert!(var > 0.0 && mean.abs() < 3.0 * var.sqrt(), "{name}");
        }
    }
}

#[test]
fn checkpoint_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let x = input(2, 8, 6, 5);
    let text = text(2, 6);
    let (vm, model) = build(EncoderKind::InfoGcn, Guidance::Both, 1);
    // a train-mode pass moves the BN running statistics, which must be saved too
    model.forward_train(&x, Some(&text), true).unwrap();
    vm.save(&path).unwrap();
    let want = model.embed(&x).unwrap().to_vec2::<f32>().unwrap();
    let (mut vm2, model2) = build(EncoderKind::InfoGcn, Guidance::Both, 2);
    assert_ne!(model2.embed(&x).unwrap().to_vec2::<f32>().unwrap(), want);
    vm2.load(&path).unwrap();
    assert_eq!(model2.embed(&x).unwrap().to_vec2::<f32>().unwrap(), want);
    // names are stable: same set in both maps
    let names = |vm: &candle_nn::VarMap| {
        let mut v: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
        v.sort();
        v
    };
    assert_eq!(names(&vm), names(&vm2));
}

#[test]
fn train_mode_updates_running_stats_eval_mode_does_not() {
    let (vm, model) = build(EncoderKind::StGcn, Guidance::None, 0);
    let get = |vm: &candle_nn::VarMap| {
        all_values(vm)
            .into_iter()
            .find(|(n, _)| n == "encoder.data_bn.running_mean")
            .unwrap()
            .1
    };
    let before = get(&vm);
    let x = (input(2, 8, 6, 9) + 3.0).unwrap();
    model.embed(&x).unwrap();
    model.forward_train(&x, None, false).unwrap();
    assert_eq!(get(&vm), before);
    model.forward_train(&x, None, true).unwrap();
    assert_ne!(get(&vm), before);
}

#[test]
fn embed_is_deterministic_and_batch_independent() {
    let (_vm, model) = build(EncoderKind::InfoGcn, Guidance::Both, 0);
    let x = input(3, 8, 6, 11);
    let all = model.embed(&x).unwrap().to_vec2::<f32>().unwrap();
    let one = model
        .embed(&x.narrow(0, 1, 1).unwrap())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    // relative: embeddings reach ~40, where one f32 ulp is ~4e-6 and the fused kernels may
    // sum in a different order for a different batch size
    for (a, b) in all[1].iter().zip(&one[0]) {
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    assert_eq!(model.embed(&x).unwrap().to_vec2::<f32>().unwrap(), all);
}

#[test]
fn reweight_modes_change_the_later_blocks_only() {
    let x = input(2, 8, 6, 3);
    let mut outs = Vec::new();
    for rw in [Reweight::Off, Reweight::Multiplicative, Reweight::Residual] {
        let mut cfg = CrossGlgConfig::tiny(EncoderKind::CtrGcn, 4, 8);
        cfg.guidance = Guidance::G2l;
        cfg.jid.reweight = rw;
        let (_vm, m) = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).unwrap();
        let k = m
            .joint_importance(&x)
            .unwrap()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        outs.push((k, m.embed(&x).unwrap().to_vec2::<f32>().unwrap()));
    }
    // same JID output (it sits before the re-weighted blocks), different embeddings
    assert_eq!(outs[0].0, outs[1].0);
    assert_eq!(outs[0].0, outs[2].0);
    assert_ne!(outs[0].1, outs[1].1);
    assert_ne!(outs[1].1, outs[2].1);
    // JID off => identical to a model without JID
    let mut cfg = CrossGlgConfig::tiny(EncoderKind::CtrGcn, 4, 8);
    cfg.guidance = Guidance::None;
    let (_vm, m) = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.embed(&x).unwrap().to_vec2::<f32>().unwrap(), outs[0].1);
}

#[test]
fn jid_position_is_clamped() {
    let mut cfg = CrossGlgConfig::tiny(EncoderKind::StGcn, 4, 8);
    cfg.jid.after_block = 5; // the tiny encoder has 4 blocks
    assert_eq!(cfg.effective_jid_after(), 3);
    let (_vm, m) = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.jid_after(), 3);
    let (vm_std, _) = build_seeded(
        &CrossGlgConfig::standard(EncoderKind::InfoGcn, 60),
        &common::toy(),
        0,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    // standard: after block 5 (128 channels) -> fc1 is 128 -> 256
    let fc1 = vm_std.data().lock().unwrap()["jid.fc1.weight"]
        .dims()
        .to_vec();
    assert_eq!(fc1, vec![256, 128]);
}

#[test]
fn errors_name_the_problem() {
    let (_vm, model) = build(EncoderKind::CtrGcn, Guidance::Both, 0);
    let x1 = Tensor::zeros((2, 3, 8, 6, 1), DType::F32, &Device::Cpu).unwrap();
    let e = model.embed(&x1).unwrap_err().to_string();
    assert!(e.contains("persons"), "{e}");
    let x25 = Tensor::zeros((2, 3, 8, 25, 2), DType::F32, &Device::Cpu).unwrap();
    let e = model.embed(&x25).unwrap_err().to_string();
    assert!(e.contains("joints"), "{e}");
    let x = input(2, 8, 6, 0);
    let out = model.forward_train(&x, None, true).unwrap();
    assert!(out.logits_c.is_none());
    let labels = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let e = model.loss(&out, &labels, None).unwrap_err().to_string();
    assert!(e.contains("k_gt"), "{e}");
    let bad_text = Tensor::zeros((2, 6, 5), DType::F32, &Device::Cpu).unwrap();
    let e = model
        .forward_train(&x, Some(&bad_text), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("text_local"), "{e}");
    // config validation
    let mut cfg = CrossGlgConfig::tiny(EncoderKind::CtrGcn, 4, 8);
    cfg.interaction.heads = 3;
    let e = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("interaction.heads"), "{e}");
    let mut cfg = CrossGlgConfig::tiny(EncoderKind::CtrGcn, 4, 8);
    cfg.interaction.text_side = crossglg_model::TextSide::Fixed;
    let e = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("interaction.text_side"), "{e}");
    let mut cfg = CrossGlgConfig::tiny(EncoderKind::CtrGcn, 4, 8);
    cfg.encoder.temporal_kernel = 4;
    assert!(build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).is_err());
    assert!(Graph::new(3, vec![(0, 1)], 0).is_err());
}

#[test]
fn config_serde_round_trip() {
    let cfg = CrossGlgConfig::standard(EncoderKind::CtrGcn, 120);
    let s = serde_json::to_string(&cfg).unwrap();
    let back: CrossGlgConfig = serde_json::from_str(&s).unwrap();
    assert_eq!(back, cfg);
    let partial: CrossGlgConfig =
        serde_json::from_str(r#"{"guidance":"g2l","encoder":{"kind":"st_gcn"}}"#).unwrap();
    assert_eq!(partial.guidance, Guidance::G2l);
    assert_eq!(partial.encoder.kind, EncoderKind::StGcn);
    assert!(serde_json::from_str::<CrossGlgConfig>(r#"{"guidanc":"g2l"}"#).is_err());
    let _ = param_count;
}

/// A fixed text side scores skeletons against each text minus the training classes' mean: it
/// has no text parameters, its centres are set once, saved with the weights and never trained,
/// and a common shift of every text (training and scored alike) changes nothing.
#[test]
fn fixed_text_side_is_centred_on_the_training_classes() {
    use crossglg_model::{set_text_centers, trainable_vars, CrossForm, TextSide};
    let mut cfg = CrossGlgConfig::tiny(EncoderKind::StGcn, 4, 8);
    cfg.interaction.form = CrossForm::Target;
    cfg.interaction.text_side = TextSide::Fixed;
    let x = input(3, 8, 6, 7);
    let tg = text(4, 11).mean(1).unwrap(); // (4, 8)
    let tl = text(4, 12); // (4, 6, 8)
    let (vm, model) = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).unwrap();
    let sims = |m: &CrossGlg, g: &Tensor, l: &Tensor| {
        let t = m.text_similarity(&x, g, l).unwrap().unwrap();
        let v = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        [v(t.global), v(t.local)].concat()
    };
    let uncentred = sims(&model, &tg, &tl);
    assert!(set_text_centers(&vm, &tg, &tl).unwrap());
    let centred = sims(&model, &tg, &tl);
    assert_ne!(centred, uncentred, "the centres are not used");
    let stored = |name: &str| {
        let d = vm.data().lock().unwrap();
        d[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let want = tg.mean(0).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(stored("align.text_center_global"), want);
    let want = tl.mean(0).unwrap().flatten_all().unwrap();
    assert_eq!(
        stored("align.text_center_local"),
        want.to_vec1::<f32>().unwrap()
    );
    assert_eq!(param_count(&vm, "align.text"), 0);
    assert!(trainable_vars(&vm)
        .iter()
        .all(|(n, _)| !n.contains("text_center")));

    // The texts' own geometry: shifting every text by one vector, centres included, is a no-op.
    let shift = text(1, 13).mean(1).unwrap(); // (1, 8)
    let (tg2, tl2) = (
        tg.broadcast_add(&shift).unwrap(),
        tl.broadcast_add(&shift.unsqueeze(0).unwrap()).unwrap(),
    );
    let (vm2, model2) = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).unwrap();
    set_text_centers(&vm2, &tg2, &tl2).unwrap();
    let shifted = sims(&model2, &tg2, &tl2);
    for (a, b) in shifted.iter().zip(&centred) {
        assert!((a - b).abs() < 1e-5, "{a} {b}");
    }

    // Saved and loaded with the weights.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    vm.save(&path).unwrap();
    let (mut vm3, model3) =
        build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).unwrap();
    vm3.load(&path).unwrap();
    assert_eq!(sims(&model3, &tg, &tl), centred);

    // A learned text side has nothing to centre.
    cfg.interaction.text_side = TextSide::Learned;
    let (vm4, _) = build_seeded(&cfg, &common::toy(), 0, DType::F32, &Device::Cpu).unwrap();
    assert!(!set_text_centers(&vm4, &tg, &tl).unwrap());
    assert!(param_count(&vm4, "align.text") > 0);
}
