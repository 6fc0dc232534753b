//! Benchmarks of the real encoders from `crossglg-model` (as that crate runs them, fused CPU
//! kernels included unless `--kernels plain`): standard ST-GCN / CTR-GCN / InfoGCN with a
//! classifier, and the full CrossGLG training graph (JID + cross-modal branch + all loss terms).
//! Their PyTorch twins have the same names in `bench/torch_reference.py`; `run` pairs rows by
//! name. FLOPs come from `crossglg_model::forward_flops_per_sample`, an analytic count of the
//! reference formulation.

use candle_core::{DType, Tensor};
use crossglg_model::{
    build_seeded, forward_flops_per_sample, frozen, trainable_vars, CrossGlgConfig, EncoderKind,
    Graph, Guidance,
};

use crate::{peak_rss_mb, time_ms, BenchConfig, BenchError, BenchRow, Sgd};

/// Model variants (opt-in: `--variant NAME`; each standard model is 10 blocks and slow on CPU).
pub const MODEL_VARIANTS: [&str; 4] = [
    "model-stgcn",
    "model-ctrgcn",
    "model-infogcn",
    "crossglg-infogcn",
];

/// The 25-joint NTU RGB+D skeleton of `ntu25.toml`, the graph training builds for that layout.
fn ntu_graph() -> Result<Graph, BenchError> {
    let l = crate::ntu25();
    Ok(Graph::new(25, l.edges, l.center)?)
}

pub(crate) fn run(config: &BenchConfig, name: &str) -> Result<BenchRow, BenchError> {
    crossglg_kernels::tune_allocator();
    // --threads, as for the reference variants and PyTorch (this used to be skipped here, so the
    // model variants ran on rayon's default of one thread per core)
    crate::set_threads(config);
    let (kind, guidance) = match name {
        "model-stgcn" => (EncoderKind::StGcn, Guidance::None),
        "model-ctrgcn" => (EncoderKind::CtrGcn, Guidance::None),
        "model-infogcn" => (EncoderKind::InfoGcn, Guidance::None),
        "crossglg-infogcn" => (EncoderKind::InfoGcn, Guidance::Both),
        _ => return Err(BenchError::UnknownVariant(name.into())),
    };
    let c = config;
    if c.joints != 25 {
        return Err(BenchError::Joints {
            variant: name.into(),
            joints: c.joints,
        });
    }
    let mut cfg = CrossGlgConfig::standard(kind, c.classes);
    cfg.guidance = guidance;
    cfg.encoder.num_persons = c.persons;
    cfg.encoder.kernels = c.kernels;
    let dev = crossglg_model::device_from(&c.device)?;
    let graph = ntu_graph()?;
    let (varmap, model) = build_seeded(&cfg, &graph, 0, DType::F32, &dev)?;
    let x = Tensor::randn(0f32, 1.0, (c.batch, 3, c.frames, c.joints, c.persons), &dev)?;
    let labels: Vec<u32> = (0..c.batch).map(|i| (i % c.classes) as u32).collect();
    let y = Tensor::from_vec(labels, c.batch, &dev)?;
    let text = Tensor::randn(
        0f32,
        1.0,
        (c.batch, c.joints, cfg.interaction.text_dim),
        &dev,
    )?;
    let k_gt = Tensor::full(1.0 / c.joints as f32, (c.batch, c.joints), &dev)?;
    let vars = trainable_vars(&varmap);
    let params = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut opt = Sgd {
        lr: 0.01,
        momentum: 0.9,
        state: vars.into_iter().map(|(_, v)| (v, None)).collect(),
    };
    let guided = guidance != Guidance::None;
    // CROSSGLG_BENCH_SKIP_TRAIN=1 (for profiling inference alone) reports the training columns as 0
    let skip_train = std::env::var("CROSSGLG_BENCH_SKIP_TRAIN").is_ok_and(|v| v == "1");
    let (train_ms, train_cpu_ms) = if skip_train {
        Ok((0.0, 0.0))
    } else {
        time_ms(c.warmup, c.iters, || {
            let out = model.forward_train(&x, guided.then_some(&text), true)?;
            let loss = model.loss(&out, &y, guided.then_some(&k_gt))?;
            let grads = loss.total.backward()?;
            opt.step(&grads)?;
            let _ = loss.total.to_scalar::<f32>()?;
            Ok(())
        })
    }?;
    // inference without an autograd graph, like PyTorch's no_grad
    let model = frozen(&cfg, &graph, &varmap)?;
    let (infer_ms, infer_cpu_ms) = time_ms(c.warmup, c.iters, || {
        let e = model.embed(&x.detach())?;
        let _ = e.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let b = c.batch as f64;
    let gf = forward_flops_per_sample(&cfg, c.frames, c.joints) / 1e9;
    Ok(BenchRow {
        name: name.into(),
        train_ms,
        infer_ms,
        train_cpu_ms,
        infer_cpu_ms,
        // 0 rather than infinity when the training steps were skipped: JSON has no infinity
        train_samples_per_s: if skip_train { 0.0 } else { b * 1e3 / train_ms },
        infer_samples_per_s: b * 1e3 / infer_ms,
        peak_rss_mb: peak_rss_mb(),
        params,
        gflop_fwd_per_sample: gf,
        train_gflops: if skip_train {
            0.0
        } else {
            3.0 * gf * b / (train_ms / 1e3)
        },
        infer_gflops: gf * b / (infer_ms / 1e3),
        gemm_peak_gflops: crate::gemm_peak_gflops(&dev)?,
        torch: None,
    })
}
