//! Parameter counts of the standard configs (NTU-25, 3 channels, 2 persons).
mod common;
use candle_core::{DType, Device};
use crossglg_model::{build_seeded, param_count, CrossGlgConfig, EncoderKind, Guidance};

fn count(kind: EncoderKind, classes: usize, guidance: Guidance) -> (usize, usize) {
    let mut cfg = CrossGlgConfig::standard(kind, classes);
    cfg.guidance = guidance;
    let (vm, _m) = build_seeded(&cfg, &common::ntu25(), 0, DType::F32, &Device::Cpu).unwrap();
    (param_count(&vm, ""), param_count(&vm, "encoder."))
}

#[test]
fn print_counts() {
    for kind in [
        EncoderKind::StGcn,
        EncoderKind::CtrGcn,
        EncoderKind::InfoGcn,
    ] {
        for classes in [60, 120] {
            for g in [Guidance::None, Guidance::G2l, Guidance::Both] {
                let (all, enc) = count(kind, classes, g);
                eprintln!("{kind:?} {classes} {g:?}: total {all} encoder {enc}");
            }
        }
    }
}
