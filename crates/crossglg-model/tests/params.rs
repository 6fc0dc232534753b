//! Parameter counts of the standard configs (NTU-25, 3 channels, 2 persons) against the
//! published sizes: ST-GCN 3.1 M, CTR-GCN 1.46 M, InfoGCN 1.6 M (encoder + classifier).
mod common;
use candle_core::{DType, Device, Tensor};
use crossglg_model::{build_seeded, param_count, CrossGlgConfig, EncoderKind, Guidance};

fn count(kind: EncoderKind, classes: usize, guidance: Guidance) -> (usize, usize) {
    let mut cfg = CrossGlgConfig::standard(kind, classes);
    cfg.guidance = guidance;
    let (vm, _m) = build_seeded(&cfg, &common::ntu25(), 0, DType::F32, &Device::Cpu).unwrap();
    (param_count(&vm, ""), param_count(&vm, "encoder."))
}

#[test]
fn standard_configs_match_published_sizes() {
    let cases = [
        (EncoderKind::StGcn, 60, 3_098_832, 3.0e6, 3.2e6),
        (EncoderKind::StGcn, 120, 3_114_252, 3.0e6, 3.2e6),
        (EncoderKind::CtrGcn, 60, 1_446_672, 1.4e6, 1.5e6),
        (EncoderKind::CtrGcn, 120, 1_462_092, 1.4e6, 1.5e6),
        (EncoderKind::InfoGcn, 60, 1_581_514, 1.5e6, 1.7e6),
        (EncoderKind::InfoGcn, 120, 1_596_934, 1.5e6, 1.7e6),
    ];
    for (kind, classes, exact, lo, hi) in cases {
        let (all, _) = count(kind, classes, Guidance::None);
        assert!(
            (lo..hi).contains(&(all as f64)),
            "{kind:?}/{classes}: {all}"
        );
        assert_eq!(all, exact, "{kind:?}/{classes}");
    }
    // JID adds a small scorer; the cross-modal branch is larger but training-only
    let (none, enc) = count(EncoderKind::InfoGcn, 120, Guidance::None);
    let (g2l, enc2) = count(EncoderKind::InfoGcn, 120, Guidance::G2l);
    let (both, _) = count(EncoderKind::InfoGcn, 120, Guidance::Both);
    assert_eq!(enc, enc2);
    assert_eq!(enc, 1_368_718);
    assert_eq!(g2l - none, 33_281);
    assert!(both > g2l);
}

/// Rough CPU timings of the standard models (not a test of speed; run with
/// `cargo test -p crossglg-model --test params -- --ignored --nocapture`).
#[test]
#[ignore]
fn time_standard_models() {
    let x = Tensor::randn(0f32, 1., (4, 3, 64, 25, 2), &Device::Cpu).unwrap();
    let text = Tensor::randn(0f32, 1., (4, 25, 384), &Device::Cpu).unwrap();
    let labels = Tensor::new(&[0u32, 1, 2, 3], &Device::Cpu).unwrap();
    let k_gt = Tensor::full(0.04f32, (4, 25), &Device::Cpu).unwrap();
    for kind in [
        EncoderKind::StGcn,
        EncoderKind::CtrGcn,
        EncoderKind::InfoGcn,
    ] {
        let cfg = CrossGlgConfig::standard(kind, 60);
        let (_vm, m) = build_seeded(&cfg, &common::ntu25(), 0, DType::F32, &Device::Cpu).unwrap();
        m.embed(&x).unwrap();
        let t0 = std::time::Instant::now();
        m.embed(&x).unwrap();
        let inf = t0.elapsed();
        let t0 = std::time::Instant::now();
        let out = m.forward_train(&x, Some(&text), true).unwrap();
        let loss = m.loss(&out, &labels, Some(&k_gt)).unwrap();
        loss.total.backward().unwrap();
        let step = t0.elapsed();
        eprintln!("{kind:?}: embed(4×3×64×25×2) {inf:?}, train fwd+bwd {step:?}");
    }
}
