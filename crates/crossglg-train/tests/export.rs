//! `crossglg export`: the folder serves like its run, its golden outputs are this build's, the
//! PyTorch-named weights hold what the twins need, and an export never half-replaces a folder.
//! (The comparison with PyTorch itself is bench/check_export.sh: CI has no torch.)

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use crossglg_data::synth::{generate, SynthConfig};
use crossglg_infer::embedder::Embedder;
use crossglg_train::export::{export, ExportError, ExportOptions};
use crossglg_train::run::{train, TrainOptions, TrainedModel};

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

#[test]
fn export_serves_like_its_run_and_names_weights_for_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let desc = common::write_descriptions(tmp.path());
    let quiet = TrainOptions {
        progress: false,
        ..TrainOptions::default()
    };
    let samples = generate(&SynthConfig {
        classes: vec!["wave".into(), "kick".into()],
        samples_per_class: 1,
        ..SynthConfig::default()
    })
    .unwrap();
    let skeletons: Vec<_> = samples.samples.iter().map(|s| s.skeleton.clone()).collect();

    for (kind, recipe) in [
        ("ctr_gcn", "paper"),
        ("info_gcn", "target"),
        ("st_gcn", "paper"),
    ] {
        let run = tmp.path().join(format!("run-{kind}"));
        let cfg = common::small_config(kind, recipe, "cpu", 1, &desc);
        train(&cfg, &run, &quiet).unwrap();
        let out = tmp.path().join(format!("export-{kind}"));
        let s = export(
            &run,
            &out,
            &ExportOptions {
                torch: true,
                force: false,
            },
        )
        .unwrap();
        for f in [
            "model.safetensors",
            "pytorch_model.safetensors",
            "golden.safetensors",
            "config.json",
            "layout.toml",
            "training-config.toml",
            "embedding_center.json",
            "README.md",
        ] {
            assert!(out.join(f).is_file(), "{kind}: {f} missing");
        }

        // The folder is a model every command takes: same weights, same embeddings.
        let (from_run, _, _) = TrainedModel::load(&run, &Device::Cpu).unwrap();
        let (from_export, _, _) = TrainedModel::load(&out, &Device::Cpu).unwrap();
        assert_eq!(from_run.weights_hash, from_export.weights_hash, "{kind}");
        assert_eq!(
            from_run.embed(&skeletons).unwrap(),
            from_export.embed(&skeletons).unwrap(),
            "{kind}"
        );
        // the target recipe's text cohort travels with it (the description prior reads it)
        assert_eq!(
            out.join("text_cohort.safetensors").is_file(),
            recipe == "target",
            "{kind}"
        );
        assert_eq!(from_export.cohort.is_some(), recipe == "target", "{kind}");
        if let (Some(a), Some(b)) = (&from_run.cohort, &from_export.cohort) {
            assert_eq!(common::max_diff(&a.joints, &b.joints), 0.0, "{kind}");
        }
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["format"], "crossglg-export/1");
        assert_eq!(cfg["weights_sha256"], from_run.weights_hash.as_str());
        assert_eq!(cfg["architecture"]["encoder"], kind);
        assert_eq!(cfg["architecture"]["jid"]["after_block"], 1);
        let card = std::fs::read_to_string(out.join("README.md")).unwrap();
        assert!(card.contains(&from_run.weights_hash) && card.contains("[data]"));

        // Golden outputs are what this build computes on the golden input.
        let golden = tensors(&out.join("golden.safetensors"));
        let e = from_export.model.embed(&golden["input"]).unwrap();
        assert_eq!(common::max_diff(&e, &golden["embedding"]), 0.0, "{kind}");
        assert!(golden.contains_key("joint_importance"), "{kind}");
        assert_eq!(
            golden.contains_key("logits_cross"),
            recipe == "paper",
            "{kind}: the paper-form branch's logits"
        );

        // PyTorch names: the twins' structure, the topologies as the twins learn them.
        let ours = tensors(&out.join("model.safetensors"));
        let theirs = tensors(&out.join("pytorch_model.safetensors"));
        for name in theirs.keys() {
            assert!(
                !name.contains("pa_delta")
                    && !name.contains("topology_delta")
                    && !name.starts_with("encoder.l")
                    && !name.contains("st_gcn_networks")
                    && !name.contains(".q.")
                    && !name.starts_with("align."),
                "{kind}: crossglg name `{name}` under PyTorch names"
            );
        }
        match kind {
            "ctr_gcn" => {
                let pa = &theirs["encoder.blocks.1.gcn1.PA"];
                let delta = &ours["encoder.l2.gcn1.pa_delta"];
                let a = &theirs["encoder.blocks.0.gcn1.PA"];
                assert_eq!(pa.dims(), delta.dims());
                // PA = A + delta: the difference of two blocks' PA is the difference of deltas
                let d = (pa - a).unwrap();
                let dd = (delta - &ours["encoder.l1.gcn1.pa_delta"]).unwrap();
                assert!(common::max_diff(&d, &dd) < 1e-6, "{kind}");
                let w = &theirs["cross.blocks.0.cross_attn.in_proj_weight"];
                assert_eq!(w.dims(), &[48, 16]);
                let q = &ours["cross.blocks.0.cross_attn.q.weight"];
                assert_eq!(common::max_diff(&w.narrow(0, 0, 16).unwrap(), q), 0.0);
                assert!(s.torch_left_out.is_empty());
            }
            "info_gcn" => {
                assert!(theirs.contains_key("encoder.A_vector"));
                assert!(theirs.contains_key("ib.z_prior"));
                assert!(theirs.contains_key("encoder.blocks.1.tcn1.branches.0.0.weight"));
                assert!(
                    !s.torch_left_out.is_empty()
                        && s.torch_left_out.iter().all(|n| n.starts_with("align.")),
                    "{:?}",
                    s.torch_left_out
                );
            }
            _ => {
                assert!(theirs.contains_key("encoder.blocks.0.A"));
                assert!(theirs.contains_key("encoder.blocks.1.gcn.weight"));
            }
        }
        // The PyTorch-named file is not taken for a crossglg model.
        let e = TrainedModel::load(&out.join("pytorch_model.safetensors"), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("PyTorch names"), "{e}");
    }

    // An export replaces only an earlier export, and only when asked.
    let run = tmp.path().join("run-ctr_gcn");
    let out = tmp.path().join("export-ctr_gcn");
    let opts = ExportOptions::default();
    assert!(matches!(
        export(&run, &out, &opts),
        Err(ExportError::Exists { .. })
    ));
    let force = ExportOptions {
        torch: false,
        force: true,
    };
    export(&run, &out, &force).unwrap();
    assert!(!out.join("pytorch_model.safetensors").exists());
    let mine = tmp.path().join("my-folder");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    assert!(matches!(
        export(&run, &mine, &force),
        Err(ExportError::NotAnExport { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );
    // A run that is not there names itself, and nothing is left behind.
    let e = export(&tmp.path().join("nope"), &tmp.path().join("x"), &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".crossglg-export-")
        })
        .collect();
    assert!(leftovers.is_empty());
}
