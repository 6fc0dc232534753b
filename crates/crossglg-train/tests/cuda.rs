//! Training on the GPU against the CPU (only with `--features cuda` on a machine with a GPU;
//! scripts/build-cuda.sh builds it, scripts/gpu-check.sh runs it): 20 steps from the same
//! seeded weights follow the same loss curve, and the GPU's checkpoint serves on the CPU with
//! the GPU's embeddings.
#![cfg(feature = "cuda")]
mod common;

use std::path::Path;

use candle_core::Device;
use crossglg_infer::embedder::Embedder;
use crossglg_train::run::{train, TrainOptions, TrainedModel};

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("loss").and_then(|x| x.as_f64()))
        .collect()
}

#[test]
fn gpu_training_follows_the_cpu_and_its_checkpoint_serves_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let quiet = TrainOptions {
        progress: false,
        ..TrainOptions::default()
    };
    let desc = common::write_descriptions(tmp.path());
    let (cpu, gpu) = (tmp.path().join("cpu"), tmp.path().join("gpu"));
    let cfg = |dev| common::small_config("ctr_gcn", "paper", dev, 10, &desc);
    train(&cfg("cpu"), &cpu, &quiet).unwrap();
    train(&cfg("cuda"), &gpu, &quiet).unwrap();
    let (a, b) = (losses(&cpu), losses(&gpu));
    assert!(a.len() >= 20, "{} steps", a.len());
    assert_eq!(a.len(), b.len());
    // Summation order differs between the devices; the curves drift apart slowly.
    let worst = a
        .iter()
        .zip(&b)
        .take(20)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        .fold(0.0, f64::max);
    eprintln!("largest relative loss difference over 20 steps: {worst:.2e}");
    assert!(worst < 1e-2, "CPU {a:?}\nGPU {b:?}");

    // the GPU's checkpoint on the CPU gives what the GPU gives
    let probe = crossglg_data::synth::generate(&crossglg_data::synth::SynthConfig {
        classes: vec!["wave".into()],
        samples_per_class: 2,
        ..Default::default()
    })
    .unwrap();
    let sk: Vec<_> = probe.samples.iter().map(|s| s.skeleton.clone()).collect();
    let gpu_dev = Device::new_cuda(0).unwrap();
    let (on_cpu, _, _) = TrainedModel::load(&gpu, &Device::Cpu).unwrap();
    let (on_gpu, _, _) = TrainedModel::load(&gpu, &gpu_dev).unwrap();
    let (e1, e2) = (on_cpu.embed(&sk).unwrap(), on_gpu.embed(&sk).unwrap());
    let diff = e1
        .iter()
        .flatten()
        .zip(e2.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!("largest embedding difference, GPU checkpoint on CPU vs GPU: {diff:.2e}");
    assert!(diff < 1e-3, "{diff}");
    assert_eq!(on_cpu.weights_hash, on_gpu.weights_hash);
}

/// Data-parallel training at world size 1 through real NCCL (`--features nccl`): the
/// communicator forms, every step's gradients go through NCCL's all-reduce, and the run ends
/// with exactly the weights of plain GPU training. Larger worlds need a GPU per rank.
#[cfg(feature = "nccl")]
#[test]
fn one_rank_over_nccl_trains_as_plain_gpu_training() {
    use crossglg_train::dist::{join, Launch};
    let tmp = tempfile::tempdir().unwrap();
    let desc = common::write_descriptions(tmp.path());
    let cfg = common::small_config("ctr_gcn", "paper", "cuda", 2, &desc);
    let quiet = || TrainOptions {
        progress: false,
        ..TrainOptions::default()
    };
    let plain = train(&cfg, &tmp.path().join("plain"), &quiet()).unwrap();
    let launch = Launch {
        rank: 0,
        world: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: 29500,
    };
    let dev = Device::new_cuda(0).unwrap();
    let opts = TrainOptions {
        collective: Some(join(&launch, &dev).unwrap()),
        device: Some(dev),
        ..quiet()
    };
    let ranked = train(&cfg, &tmp.path().join("nccl"), &opts).unwrap();
    eprintln!(
        "plain {} / NCCL {} ({} steps)",
        plain.weights_hash, ranked.weights_hash, ranked.steps
    );
    assert_eq!(plain.steps, ranked.steps);
    assert_eq!(plain.weights_hash, ranked.weights_hash);
}
