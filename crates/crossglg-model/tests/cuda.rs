//! CPU vs CUDA agreement (only with `--features cuda` on a machine with a GPU). Seeded init is
//! device-independent, so both devices start from the same weights.
#![cfg(feature = "cuda")]
mod common;
use candle_core::{DType, Device, Tensor};
use crossglg_model::{build_seeded, CrossGlgConfig, EncoderKind};

#[test]
fn cuda_matches_cpu() {
    let gpu = Device::new_cuda(0).expect("built with --features cuda but no CUDA device 0");
    for kind in [
        EncoderKind::StGcn,
        EncoderKind::CtrGcn,
        EncoderKind::InfoGcn,
    ] {
        let cfg = CrossGlgConfig::tiny(kind, 4, 8);
        let x: Vec<f32> = (0..2 * 3 * 9 * 6 * 2)
            .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
            .collect();
        let x = Tensor::from_vec(x, (2, 3, 9, 6, 2), &Device::Cpu).unwrap();
        let text = Tensor::ones((2, 6, 8), DType::F32, &Device::Cpu).unwrap();
        let mut embs = Vec::new();
        let mut losses = Vec::new();
        for dev in [Device::Cpu, gpu.clone()] {
            let (_vm, m) = build_seeded(&cfg, &common::toy(), 3, DType::F32, &dev).unwrap();
            let xd = x.to_device(&dev).unwrap();
            let td = text.to_device(&dev).unwrap();
            embs.push(m.embed(&xd).unwrap().to_device(&Device::Cpu).unwrap());
            let out = m.forward_train(&xd, Some(&td), false).unwrap();
            let labels = Tensor::new(&[0u32, 1], &dev).unwrap();
            let k_gt = Tensor::full(1f32 / 6.0, (2, 6), &dev).unwrap();
            let parts = m.loss(&out, &labels, Some(&k_gt)).unwrap();
            parts.total.backward().unwrap();
            losses.push(parts.total.to_scalar::<f32>().unwrap());
        }
        let diff: f32 = (&embs[0] - &embs[1])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-3, "{kind:?}: embeddings differ by {diff}");
        assert!((losses[0] - losses[1]).abs() < 1e-3, "{kind:?}: {losses:?}");
    }
}
