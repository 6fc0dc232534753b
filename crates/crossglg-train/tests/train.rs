//! End-to-end training on a small synthetic set: resume continues exactly, a run writes every
//! artefact, and the trained embedding beats chance on the novel classes.

use std::path::Path;

use candle_core::Device;
use crossglg_infer::embedder::Embedder;
use crossglg_infer::gallery::{Gallery, ThresholdCalibration};
use crossglg_infer::report::EvalReport;
use crossglg_train::checkpoint::Checkpoint;
use crossglg_train::config::TrainConfig;
use crossglg_train::run::{evaluate_run, load_run, train, TrainOptions};

fn config(dir: &Path, epochs: usize, guidance: &str) -> TrainConfig {
    let desc = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/synthetic-descriptions.json");
    let text = format!(
        r#"
seed = 3
epochs = {epochs}
batch_size = 16
[data]
split = "synthetic"
[data.synthetic]
classes = ["wave", "punch", "kick", "squat", "jump", "clap", "raise_arms", "march"]
samples_per_class = 9
subjects = 3
views = 3
frames = [24, 32]
[text]
descriptions = {desc:?}
encoder = "hashed"
hashed_dim = 64
[preprocess]
frames = 16
persons = 1
[model]
guidance = "{guidance}"
[model.encoder]
kind = "st_gcn"
blocks = [{{ channels = 8, stride = 1 }}, {{ channels = 16, stride = 2 }}, {{ channels = 16, stride = 1 }}]
[model.jid]
after_block = 1
hidden = 8
[model.interaction]
dim = 16
heads = 2
depth = 1
[optim]
lr = 0.05
warmup_epochs = 1
schedule = "cosine"
[eval]
calibration = true
batch_size = 32
"#
    );
    let _ = dir;
    TrainConfig::from_toml_str(&text, "test config").unwrap()
}

fn quiet() -> TrainOptions {
    TrainOptions {
        progress: false,
        ..TrainOptions::default()
    }
}

fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = Checkpoint::load(&run.join("last.safetensors"), &Device::Cpu).unwrap();
    let mut w: Vec<(String, Vec<f32>)> = ck
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("model."))
        .map(|(k, t)| {
            (
                k.clone(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn resume_continues_exactly_and_run_writes_its_artefacts() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    let cfg = config(tmp.path(), 2, "both");
    train(&cfg, &straight, &quiet()).unwrap();

    let split_run = tmp.path().join("split");
    let first = TrainOptions {
        max_epochs_this_call: Some(1),
        ..quiet()
    };
    train(&cfg, &split_run, &first).unwrap();
    assert!(
        !split_run.join("report.json").exists(),
        "no report before the last epoch"
    );
    let rest = TrainOptions {
        resume: true,
        ..quiet()
    };
    // What a kill mid-epoch leaves: metric rows past the checkpoint and a writer's temporary
    // file. Resuming drops both.
    let mut m = std::fs::read_to_string(split_run.join("metrics.jsonl")).unwrap();
    m += "{\"epoch\": 1, \"step\": 999999, \"loss\": 1.0}\n";
    std::fs::write(split_run.join("metrics.jsonl"), m).unwrap();
    let leftover = split_run.join(".last.safetensors.k1ll3d.safetensors");
    std::fs::write(&leftover, b"half a checkpoint").unwrap();
    // A changed config is refused, naming what changed.
    let mut other = cfg.clone();
    other.seed += 1;
    let e = train(&other, &split_run, &rest).unwrap_err().to_string();
    assert!(e.contains("seed") && e.contains("--force"), "{e}");
    train(&cfg, &split_run, &rest).unwrap();
    assert!(!leftover.exists(), "leftover temporary file kept");
    assert_eq!(
        weights(&straight),
        weights(&split_run),
        "resumed run differs"
    );

    for f in [
        "config.toml",
        "metrics.jsonl",
        "last.safetensors",
        "checkpoints/epoch-001.safetensors",
        "checkpoints/epoch-002.safetensors",
        "base_stats.safetensors",
        "report.json",
        "report.md",
    ] {
        assert!(straight.join(f).exists(), "missing {f}");
    }
    let lines = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
    let resumed = std::fs::read_to_string(split_run.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), resumed.lines().count());
    // forced, the changed config is accepted (nothing left to train here)
    let mut other = cfg.clone();
    other.seed += 1;
    let forced = TrainOptions {
        resume: true,
        force: true,
        ..quiet()
    };
    train(&other, &split_run, &forced).unwrap();

    // `crossglg eval` on the finished run reproduces the report written by training.
    let written: Vec<EvalReport> =
        serde_json::from_str(&std::fs::read_to_string(straight.join("report.json")).unwrap())
            .unwrap();
    let again = evaluate_run(&straight, &Device::Cpu).unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(written[0].accuracy, again[0].accuracy);
}

#[test]
fn trained_embedding_beats_chance_on_novel_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = config(tmp.path(), 8, "both");
    let s = train(&cfg, &run, &quiet()).unwrap();
    assert!(s.final_loss.is_finite());
    let reports: Vec<EvalReport> =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let cosine = &reports[0];
    // 8 classes, every 4th novel: 2 novel classes, chance 50 %.
    assert_eq!(cosine.classes.len(), 2);
    assert!(
        cosine.accuracy > 0.7,
        "one-shot accuracy {:.3} is near chance",
        cosine.accuracy
    );

    // The user's flow on the same model: enroll one example of a new action into a gallery
    // and recognise the rest; a second novel action, never enrolled, should come out unknown.
    let run_data = load_run(&run, &Device::Cpu).unwrap();
    let (src, a) = (run_data.src.as_ref(), &run_data.assignment);
    let novel = &run_data.split.novel_classes;
    let label = |i: usize| src.meta(i).label.unwrap();
    let enrolled = novel[0];
    let mut gallery = Gallery::new(run_data.model.dim(), "test");
    let threshold: ThresholdCalibration =
        serde_json::from_str(&std::fs::read_to_string(run.join("unknown_threshold.json")).unwrap())
            .unwrap();
    gallery.threshold = Some(threshold.threshold);
    let ex = *a.exemplars.iter().find(|&&i| label(i) == enrolled).unwrap();
    let emb = run_data.model.embed(&[src.skeleton(ex).unwrap()]).unwrap();
    gallery
        .enroll(&src.classes()[enrolled], &emb, None)
        .unwrap();
    // Similarity to the enrolled exemplar of queries of the enrolled class and of the other one.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for &q in &a.queries {
        let e = run_data.model.embed(&[src.skeleton(q).unwrap()]).unwrap();
        let r = gallery.recognize(&e[0]).unwrap();
        if label(q) == enrolled {
            known.push(r.similarity);
        } else {
            unknown.push(r.similarity);
        }
    }
    // Threshold-free separation: the chance that a known query scores above an unknown one.
    let auc = known
        .iter()
        .map(|k| {
            unknown
                .iter()
                .map(|u| {
                    if k > u {
                        1.0
                    } else if k == u {
                        0.5
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / (known.len() * unknown.len()) as f64;
    let rates = |t: f32| {
        (
            known.iter().filter(|&&s| s >= t).count() as f64 / known.len() as f64,
            unknown.iter().filter(|&&s| s < t).count() as f64 / unknown.len() as f64,
        )
    };
    for p in &threshold.operating_points {
        let (accept, reject) = rates(p.threshold);
        eprintln!(
            "gallery at base-class false-accept target {:.2} (threshold {:.3}): enrolled class accepted {accept:.3} ({} queries), never-enrolled class rejected {reject:.3} ({} queries)",
            p.target_false_accept_rate,
            p.threshold,
            known.len(),
            unknown.len()
        );
    }
    eprintln!("known-vs-unknown similarity AUC {auc:.3}");
    // Honest bound: similarity to the enrolled exemplar separates the enrolled action from a
    // never-enrolled one clearly better than a coin. Where to cut is the operating point's
    // business (measured above and in docs/results.md), not this test's.
    assert!(
        auc > 0.7,
        "similarity does not separate known from unknown: AUC {auc:.3}"
    );
}

/// The text-target form with every new piece on, trained on a validation split with exemplar
/// draws; re-evaluation reproduces the draws, and `compare` pairs it with a guidance-none run of
/// the same seed and split.
#[test]
fn validation_split_draws_and_paired_comparison() {
    use crossglg_train::compare::{compare, read_run};
    let tmp = tempfile::tempdir().unwrap();
    let set = |cfg: &mut TrainConfig| {
        cfg.epochs = 3;
        cfg.data.validation = Some(0);
        cfg.eval.draws = 12;
        cfg.eval.draw_seed = 5;
    };
    let mut target = config(tmp.path(), 3, "both");
    set(&mut target);
    target.model.interaction.form = crossglg_model::CrossForm::Target;
    target.model.loss.cross = 1.0;
    target.model.loss.distill = 1.0;
    target.model.loss.cal_form = crossglg_model::CalLoss::Kl;
    target.model.jid.reweight = crossglg_model::Reweight::Residual;
    target.text.key_joints = crossglg_train::config::KeyJointTargets::Contrast;
    let mut none = config(tmp.path(), 3, "none");
    set(&mut none);
    let (rt, rn) = (tmp.path().join("target"), tmp.path().join("none"));
    train(&target, &rt, &quiet()).unwrap();
    train(&none, &rn, &quiet()).unwrap();

    // The validation split never touches the test classes (synthetic: every 4th class).
    let loaded = load_run(&rt, &Device::Cpu).unwrap();
    let test_classes = [0usize, 4];
    let label = |i: usize| loaded.src.meta(i).label.unwrap();
    let a = &loaded.assignment;
    assert_eq!(loaded.split.novel_classes, vec![1, 5]);
    for &i in a.train.iter().chain(&a.exemplars).chain(&a.queries) {
        assert!(
            !test_classes.contains(&label(i)),
            "{}",
            loaded.src.meta(i).name
        );
    }
    let names: Vec<String> = serde_json::from_str(
        Checkpoint::load(&rt.join("last.safetensors"), &Device::Cpu)
            .unwrap()
            .metadata["aux_classes"]
            .as_str(),
    )
    .unwrap();
    assert_eq!(names.len(), 4);
    // The loss log carries the new terms.
    let log = std::fs::read_to_string(rt.join("metrics.jsonl")).unwrap();
    for key in ["loss_cross", "loss_distill", "loss_cal"] {
        assert!(log.contains(key), "metrics.jsonl lacks {key}");
    }

    let reports: Vec<EvalReport> =
        serde_json::from_str(&std::fs::read_to_string(rt.join("report.json")).unwrap()).unwrap();
    let d = reports[0].draws.as_ref().expect("draws in the report");
    assert_eq!(d.accuracies.len(), 12);
    assert!(d.ci95[0] <= d.mean && d.mean <= d.ci95[1]);
    assert!(reports[1].draws.is_some(), "calibrated draws");
    // Re-evaluating draws the same exemplars and gets the same numbers.
    let again = evaluate_run(&rt, &Device::Cpu).unwrap();
    // (accuracies are exact ratios; the interval may differ in the last bit after JSON)
    for k in 0..2 {
        let (x, y) = (
            again[k].draws.as_ref().unwrap(),
            reports[k].draws.as_ref().unwrap(),
        );
        assert_eq!(x.accuracies, y.accuracies, "{}", reports[k].method);
    }

    // A validation run calibrates its unknown thresholds on the pseudo-novel classes, and the
    // open-set table reads them.
    let cal: crossglg_infer::gallery::ThresholdCalibration =
        serde_json::from_str(&std::fs::read_to_string(rt.join("unknown_threshold.json")).unwrap())
            .unwrap();
    assert!(
        cal.calibrated_on.contains("pseudo-novel"),
        "{}",
        cal.calibrated_on
    );
    let again = crossglg_train::run::recalibrate_unknown(&rt, &Device::Cpu).unwrap();
    assert_eq!(again.threshold, cal.threshold);
    let (used, rows) = crossglg_train::run::open_set_table(&rt, &Device::Cpu, None).unwrap();
    assert_eq!(rows.len(), used.operating_points.len());
    // the run's queries of two classes, each left out once
    assert_eq!(rows[0].known_queries, rows[0].unknown_queries);
    assert!(rows
        .windows(2)
        .all(|w| w[0].unknown_rejected >= w[1].unknown_rejected));

    let c = compare(&[read_run(&rn).unwrap()], &[read_run(&rt).unwrap()]).unwrap();
    let metrics: Vec<&str> = c.metrics.iter().map(|m| m.metric.as_str()).collect();
    assert!(
        metrics.contains(&"cosine-nn, mean of 12 draws (seed 5)"),
        "{metrics:?}"
    );
    for m in &c.metrics {
        assert_eq!(m.paired.pairs.len(), 1, "{}", m.metric);
        assert_eq!(m.paired.pairs[0].key, "seed 3, validation 0/3");
    }
    let md = c.to_markdown("none", "target");
    assert!(md.contains("target − none"), "{md}");
    // A run on other draws does not pair silently.
    let mut other = read_run(&rn).unwrap();
    for r in &mut other.reports {
        if let Some(d) = &mut r.draws {
            d.draws.seed = 6;
        }
    }
    let e = compare(&[other], &[read_run(&rt).unwrap()]).unwrap_err();
    assert!(e.to_string().contains("different exemplar draws"), "{e}");
}

/// Losses and predictions read back in windows of several steps (what a GPU run does) give the
/// same metrics rows, in the same order, as reading every step back at once.
#[test]
fn windowed_read_back_writes_the_same_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 2, "both");
    let rows = |sync: usize| -> Vec<serde_json::Value> {
        let dir = tmp.path().join(format!("sync{sync}"));
        let opts = TrainOptions {
            sync_every: Some(sync),
            ..quiet()
        };
        train(&cfg, &dir, &opts).unwrap();
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("step").is_some())
            .collect()
    };
    let (one, four) = (rows(1), rows(4));
    assert!(one.len() > 4, "{} steps", one.len());
    assert_eq!(one.len(), four.len());
    for (a, b) in one.iter().zip(&four) {
        for key in [
            "epoch",
            "step",
            "lr",
            "loss",
            "loss_skel",
            "loss_cal",
            "batch_accuracy",
        ] {
            assert_eq!(a[key], b[key], "{key}: {a} vs {b}");
        }
    }
}

/// `text_side = "fixed"`: training stores the training classes' mean texts as the centres,
/// the trained run reads them back, and zero-shot recognition of the novel classes runs
/// through them.
#[test]
fn fixed_text_side_run_is_centred_on_its_training_classes() {
    use crossglg_train::textsrc::load_class_text;
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 2, "both");
    cfg.model.interaction.form = crossglg_model::CrossForm::Target;
    cfg.model.interaction.text_side = crossglg_model::TextSide::Fixed;
    cfg.eval.zero_shot = true;
    cfg.eval.text_prior = 0.9;
    let run = tmp.path().join("fixed");
    train(&cfg, &run, &quiet()).unwrap();
    // The description prior normalises by the training cohort training kept; a run without
    // the file takes the same cohort from the dataset, so its evaluation is the same.
    let cohort = run.join("text_cohort.safetensors");
    assert!(cohort.is_file());
    let with = crossglg_train::run::evaluate_run(&run, &Device::Cpu).unwrap();
    let kept = std::fs::read(&cohort).unwrap();
    std::fs::remove_file(&cohort).unwrap();
    let without = crossglg_train::run::evaluate_run(&run, &Device::Cpu).unwrap();
    std::fs::write(&cohort, kept).unwrap();
    let prior_of = |r: &[EvalReport]| {
        r.iter()
            .find(|x| x.method == "cosine+text")
            .map(|x| serde_json::to_string(x).unwrap())
            .expect("a prior report")
    };
    assert_eq!(prior_of(&with), prior_of(&without));
    // another model's cohort beside a run is not used
    let mut other_cfg = cfg.clone();
    other_cfg.seed += 1;
    let other = tmp.path().join("other");
    train(&other_cfg, &other, &quiet()).unwrap();
    std::fs::copy(&cohort, other.join("text_cohort.safetensors")).unwrap();
    let (m, _, _) = crossglg_train::run::TrainedModel::load(&other, &Device::Cpu).unwrap();
    assert!(m.cohort.is_none());

    let ck = Checkpoint::load(&run.join("last.safetensors"), &Device::Cpu).unwrap();
    let names: Vec<String> = serde_json::from_str(ck.metadata["aux_classes"].as_str()).unwrap();
    let loaded = load_run(&run, &Device::Cpu).unwrap();
    let text = load_class_text(
        &loaded.cfg.text,
        &loaded.layout,
        &names,
        &Default::default(),
        &Device::Cpu,
    )
    .unwrap();
    let stored = |name: &str| -> Vec<f32> {
        let t = ck
            .tensors
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .unwrap_or_else(|| panic!("{name} is not in the checkpoint"))
            .1;
        t.flatten_all().unwrap().to_vec1().unwrap()
    };
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    let want = text.global.mean(0).unwrap().to_vec1::<f32>().unwrap();
    assert!(want.iter().any(|x| *x != 0.0));
    assert!(close(&stored("model.align.text_center_global"), &want));
    let want = text.local.mean(0).unwrap().flatten_all().unwrap();
    assert!(close(
        &stored("model.align.text_center_local"),
        &want.to_vec1::<f32>().unwrap()
    ));
    assert!(!ck
        .tensors
        .iter()
        .any(|(k, _)| k.starts_with("model.align.text_global")));

    let reports: Vec<EvalReport> =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let zero = reports
        .iter()
        .find(|r| r.method == "zero-shot-text")
        .expect("a zero-shot report");
    assert_eq!(zero.queries, reports[0].queries);

    // The user's path (`crossglg recognize --describe`): sequences handed over as skeletons and
    // the description file embedded anew give the evaluation's similarities, and the zero-shot
    // answers give the report's count.
    let desc = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/synthetic-descriptions.json");
    let novel: Vec<String> = loaded
        .split
        .novel_classes
        .iter()
        .map(|&c| loaded.src.classes()[c].clone())
        .collect();
    let (classes, text) = crossglg_train::run::described_classes(
        &loaded.cfg.text,
        &loaded.layout,
        &desc,
        Some(&novel),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(classes, novel);
    let queries = &loaded.assignment.queries;
    let by_index = loaded
        .model
        .text_similarity_indices(loaded.src.as_ref(), queries, &text)
        .unwrap()
        .unwrap();
    let skeletons: Vec<crossglg_data::Skeleton> = queries
        .iter()
        .map(|&i| loaded.src.skeleton(i).unwrap())
        .collect();
    let by_sequence = loaded
        .model
        .text_similarity(&skeletons, &text)
        .unwrap()
        .unwrap();
    assert_eq!(by_sequence.len(), queries.len());
    for (a, b) in by_index.iter().zip(&by_sequence) {
        assert_eq!(a.len(), novel.len());
        assert!(close(a, b), "{a:?} vs {b:?}");
    }
    let correct = queries
        .iter()
        .zip(&by_sequence)
        .filter(|&(&i, t)| {
            let r = crossglg_infer::described::recognize_zero_shot(&classes, t).unwrap();
            Some(loaded.split.novel_classes[r.class_index]) == loaded.src.meta(i).label
        })
        .count();
    assert_eq!(correct, zero.correct);
    // The zero-shot open-set table (`eval --open-set --zero-shot`): thresholds from the
    // training classes' descriptions; each novel class left out in turn, its queries rejected
    // when their best similarity among the other classes is below the threshold.
    let (cal, rows) =
        crossglg_train::run::zero_shot_open_set_table(&run, &Device::Cpu, None).unwrap();
    assert_eq!(rows.len(), cal.operating_points.len());
    assert!(cal.impostors > 0 && cal.calibrated_on.contains("training classes"));
    let k = novel.len();
    let label_of = |i: usize| {
        let l = loaded.src.meta(i).label.unwrap();
        loaded
            .split
            .novel_classes
            .iter()
            .position(|&n| n == l)
            .unwrap()
    };
    for r in &rows {
        let (mut rejected, mut left_out) = (0, 0);
        for out in 0..k {
            for (&i, s) in queries.iter().zip(&by_index) {
                if label_of(i) == out {
                    left_out += 1;
                    let best = (0..k)
                        .filter(|&c| c != out)
                        .map(|c| s[c])
                        .fold(f32::NEG_INFINITY, f32::max);
                    rejected += usize::from(best < r.threshold);
                }
            }
        }
        assert_eq!(r.unknown_queries, left_out);
        assert_eq!(r.known_queries, (k - 1) * queries.len());
        assert!((r.unknown_rejected - rejected as f64 / left_out as f64).abs() < 1e-12);
    }
    // every class of the file when none are named; a class the file lacks is an error naming it
    let (all, _) = crossglg_train::run::described_classes(
        &loaded.cfg.text,
        &loaded.layout,
        &desc,
        None,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(all.len(), 17);
    let err = crossglg_train::run::described_classes(
        &loaded.cfg.text,
        &loaded.layout,
        &desc,
        Some(&["moonwalk".to_string(), "wave".to_string()]),
        &Device::Cpu,
    )
    .err()
    .expect("a class the file lacks")
    .to_string();
    assert!(
        err.contains("moonwalk") && err.contains("synthetic-descriptions.json"),
        "{err}"
    );

    // One pass for both (`embed_and_describe`, what described streams and servers use) gives
    // what embedding and describing apart give, in a stream too.
    use crossglg_infer::embedder::{shares_model, Describer};
    let model = std::sync::Arc::new(loaded.model);
    let d = crossglg_train::run::ClassDescriber::new(
        model.clone(),
        &loaded.cfg.text,
        &loaded.layout,
        &desc,
        Some(&novel),
    )
    .unwrap();
    let (emb, text) = model.embed_and_describe(&skeletons, &d.text).unwrap();
    assert_eq!(emb, model.embed(&skeletons).unwrap());
    assert_eq!(text, by_sequence);
    assert!(shares_model(&*model, &d));
    // The user's description prior (the cohort-normalised rows, `prior_row`) over a gallery of
    // the protocol exemplars decides as the evaluation's `cosine+text` does, query by query.
    let norm = d.norm.as_ref().expect("the run kept a cohort");
    assert_eq!(d.prior_row(&text[0]), norm.apply(&text[0]));
    assert_ne!(d.prior_row(&text[0]), text[0]);
    let src = loaded.src.as_ref();
    // this small run's cohort is every training sample: its stored features give the
    // similarities the model gives those samples
    let train_rows = model
        .text_similarity_indices(src, &loaded.assignment.train, &d.text)
        .unwrap()
        .unwrap();
    for c in 0..novel.len() {
        let m = train_rows.iter().map(|r| r[c]).sum::<f32>() / train_rows.len() as f32;
        assert!((m - norm.mean[c]).abs() < 1e-5, "{m} vs {}", norm.mean[c]);
    }
    let exemplars = model
        .embed_indices(src, &loaded.assignment.exemplars)
        .unwrap();
    let mut protocol = Gallery::new(model.dim(), "test");
    for (&i, e) in loaded.assignment.exemplars.iter().zip(&exemplars) {
        protocol
            .enroll(&novel[label_of(i)], std::slice::from_ref(e), None)
            .unwrap();
    }
    assert_eq!(protocol.classes, novel);
    let mut confusion = vec![vec![0usize; novel.len()]; novel.len()];
    for ((&i, e), t) in queries.iter().zip(&emb).zip(&text) {
        let r = crossglg_infer::described::recognize_with_prior_mixing(
            &protocol,
            e,
            t,
            &d.prior_row(t),
            0.9,
        )
        .unwrap();
        confusion[label_of(i)][r.class_index] += 1;
    }
    let prior = reports
        .iter()
        .find(|r| r.method == "cosine+text")
        .expect("a prior report");
    assert_eq!(confusion, prior.confusion);
    /// The same describer without its hash: streams then embed and describe apart.
    struct Apart<'a>(&'a crossglg_train::run::ClassDescriber);
    impl Describer for Apart<'_> {
        fn classes(&self) -> &[String] {
            self.0.classes()
        }
        fn describe(
            &self,
            sk: &[crossglg_data::Skeleton],
        ) -> Result<Vec<Vec<f32>>, crossglg_infer::embedder::EmbedError> {
            self.0.describe(sk)
        }
        fn prior_row(&self, row: &[f32]) -> Vec<f32> {
            self.0.prior_row(row)
        }
    }
    assert!(!shares_model(&*model, &Apart(&d)));
    let mut gallery = Gallery::new(model.dim(), "test");
    for (c, name) in novel.iter().enumerate().take(3) {
        gallery.enroll(name, &[emb[c].clone()], None).unwrap();
    }
    let sk = &skeletons[0];
    let mut input = String::new();
    for t in 0..sk.frames {
        let joints: Vec<Vec<f32>> = (0..sk.joints)
            .map(|v| (0..3).map(|c| sk.get(0, t, v, c)).collect())
            .collect();
        input += &serde_json::json!({ "joints": joints }).to_string();
        input.push('\n');
    }
    let cfg = crossglg_infer::stream::StreamConfig {
        joints: sk.joints,
        window: 8,
        hop: 4,
        ..Default::default()
    };
    let events = |d: &(dyn Describer + Sync)| -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        crossglg_infer::stream::run_stream_with(
            input.as_bytes(),
            &cfg,
            &*model,
            &gallery,
            None,
            Some((d, 0.3)),
            Ok,
            |item| {
                if let crossglg_infer::stream::StreamItem::Event(mut e) = item {
                    e.latency_ms = 0.0;
                    out.push(serde_json::to_value(&e).unwrap());
                }
                Ok(())
            },
        )
        .unwrap();
        out
    };
    let shared = events(&d);
    assert!(!shared.is_empty());
    assert!(shared.iter().all(|e| e["described"]["prior"].is_object()));
    assert_eq!(shared, events(&Apart(&d)));
}
