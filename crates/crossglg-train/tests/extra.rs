//! Training with another dataset's classes added (`[[data.extra]]`): the extra samples come in
//! the main layout's joint order with labels after the main classes, their text is looked up
//! in their own description file and reordered the same way, they are trained on and never
//! evaluated, and every way of combining what cannot be combined fails naming the file.

use std::path::{Path, PathBuf};

use candle_core::Device;
use crossglg_data::pack::Packed;
use crossglg_data::synth::{generate_with_layout, SynthConfig};
use crossglg_data::{Dataset, Layout};
use crossglg_infer::calibrate::BaseStats;
use crossglg_model::Guidance;
use crossglg_train::config::{CalibrationBase, ExtraData, TrainConfig};
use crossglg_train::run::{
    calibration_stats, evaluate_run, evaluate_run_with, load_run, open_source, resolve_split,
    resolve_split_for, text_agreement, train, AgreementOptions, EvalOverrides, TrainOptions,
};
use crossglg_train::textsrc::{load_class_text, ExtraText};

mod common;

const MAIN: [&str; 6] = ["wave", "punch", "kick", "squat", "jump", "clap"];
const EXTRA: [&str; 4] = ["turn", "bow", "nod", "point"];

fn synth(classes: &[&str], seed: u64) -> SynthConfig {
    let text = format!(
        "classes = {:?}\nsamples_per_class = 6\nsubjects = 3\nviews = 2\nframes = [20, 28]\nseed = {seed}",
        classes
    );
    toml::from_str(&text).unwrap()
}

/// ntu25 with its joints listed in reverse order (same names, same bones), as a layout file.
fn reversed_ntu25(dir: &Path, joints_rename: Option<(&str, &str)>) -> (PathBuf, Layout) {
    let mut t: toml::Table = toml::from_str(&Layout::load("ntu25").unwrap().to_toml()).unwrap();
    t.insert("name".into(), "rev25".into());
    let joints = t["joints"].as_array_mut().unwrap();
    joints.reverse();
    if let Some((from, to)) = joints_rename {
        // a joint of another name: the layouts no longer name the same joints
        let text = toml::to_string(&t)
            .unwrap()
            .replace(&format!("\"{from}\""), &format!("\"{to}\""));
        t = toml::from_str(&text).unwrap();
    }
    let path = dir.join("rev25.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    let layout = Layout::load(path.to_str().unwrap()).unwrap();
    (path, layout)
}

/// The extra dataset: generated on ntu25, then written in the reversed layout. Returns the
/// ntu25 original (what the combined source must give back) and the packed file.
fn write_extra(
    dir: &Path,
    classes: &[&str],
    layout: &Layout,
    layout_path: &Path,
) -> (Dataset, PathBuf) {
    let ntu = Layout::load("ntu25").unwrap();
    let original = generate_with_layout(&synth(classes, 11), &ntu).unwrap();
    // joint v of the reversed layout is ntu25's joint 24 - v
    let perm: Vec<usize> = (0..25).rev().collect();
    let mut reversed = original.clone();
    reversed.name = "extra-set".into();
    reversed.layout = layout_path.display().to_string();
    for s in &mut reversed.samples {
        s.skeleton = s.skeleton.select_joints(&perm);
    }
    let path = dir.join("extra.safetensors");
    Packed::write_with(
        &reversed,
        layout,
        &path,
        &crossglg_data::progress::Progress::new("packing", 0, false),
    )
    .unwrap();
    (original, path)
}

/// The extra classes' descriptions, written for the reversed layout (the demo's own text).
fn write_extra_descriptions(dir: &Path, classes: &[&str]) -> PathBuf {
    let mut v: serde_json::Value = serde_json::from_str(common::DESCRIPTIONS).unwrap();
    v["layout"] = "rev25.toml".into();
    v["dataset"] = "extra-set".into();
    let kept: Vec<serde_json::Value> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| classes.contains(&c["name"].as_str().unwrap()))
        .cloned()
        .enumerate()
        .map(|(i, mut c)| {
            c["id"] = i.into();
            c
        })
        .collect();
    assert_eq!(kept.len(), classes.len());
    v["classes"] = kept.into();
    let path = dir.join("extra-descriptions.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    path
}

/// The shared small config (its six motions are [`MAIN`]) with `extra` added and `guidance`.
fn config(dir: &Path, extra: Option<ExtraData>, guidance: Guidance) -> TrainConfig {
    let desc = common::write_descriptions(dir);
    let mut cfg = common::small_config("st_gcn", "target", "cpu", 2, &desc);
    cfg.model.guidance = guidance;
    cfg.data.extra = extra.into_iter().collect();
    cfg
}

fn extra(packed: &Path, descriptions: Option<&Path>) -> Option<ExtraData> {
    Some(ExtraData {
        packed: packed.to_path_buf(),
        descriptions: descriptions.map(Path::to_path_buf),
    })
}

#[test]
fn extra_dataset_joins_training_only_in_the_main_joint_order() {
    let dir = tempfile::tempdir().unwrap();
    let (layout_path, rev) = reversed_ntu25(dir.path(), None);
    let (original, packed) = write_extra(dir.path(), &EXTRA, &rev, &layout_path);
    let descriptions = write_extra_descriptions(dir.path(), &EXTRA);
    let cfg = config(
        dir.path(),
        extra(&packed, Some(&descriptions)),
        Guidance::Both,
    );

    // The config keeps the section through its own TOML.
    let again = TrainConfig::from_toml_str(&cfg.to_toml(), "written back").unwrap();
    assert_eq!(again.data.extra, cfg.data.extra);
    assert_eq!(cfg.data.extra.len(), 1);
    // `eval.calibration_base` is written only when not the default, so runs from before it
    // existed still resume with an unchanged config.
    assert!(!cfg.to_toml().contains("calibration_base"));
    let mut main_cfg = cfg.clone();
    main_cfg.eval.calibration_base = CalibrationBase::Main;
    let back = TrainConfig::from_toml_str(&main_cfg.to_toml(), "written back").unwrap();
    assert_eq!(back.eval.calibration_base, CalibrationBase::Main);

    // The combined source: main samples first, then the extra ones, relabelled and renamed,
    // their skeletons back in ntu25's order.
    let src = open_source(&cfg).unwrap();
    let main_n = MAIN.len() * 8;
    assert_eq!(src.len(), main_n + original.samples.len());
    assert_eq!(src.classes().len(), MAIN.len() + EXTRA.len());
    assert_eq!(src.extra_classes(), MAIN.len()..MAIN.len() + EXTRA.len());
    assert_eq!(src.layout().name, "ntu25");
    for (k, s) in original.samples.iter().enumerate() {
        let i = main_n + k;
        assert_eq!(src.meta(i).name, format!("extra-set/{}", s.meta.name));
        assert_eq!(src.meta(i).label, s.meta.label.map(|l| l + MAIN.len()));
        assert_eq!(src.skeleton(i).unwrap(), s.skeleton, "sample {k}");
    }
    // The extra classes are auxiliary, never novel; the main split is otherwise unchanged.
    let own = resolve_split(&cfg).unwrap();
    let split = resolve_split_for(&cfg, src.as_ref()).unwrap();
    assert_eq!(split.novel_classes, own.novel_classes);
    assert_eq!(
        split.auxiliary_classes,
        own.auxiliary_classes
            .iter()
            .copied()
            .chain(MAIN.len()..MAIN.len() + EXTRA.len())
            .collect::<Vec<_>>()
    );
    let a = split.apply(&src.metas()).unwrap();
    let a_own = own.apply(&src.metas()[..main_n]).unwrap();
    assert_eq!(a.queries, a_own.queries);
    assert_eq!(a.exemplars, a_own.exemplars);
    assert_eq!(a.train.len(), a_own.train.len() + original.samples.len());

    // Training uses the extra classes (their logits exist) and evaluates the main ones only.
    let run = dir.path().join("run");
    let opts = TrainOptions {
        progress: false,
        ..TrainOptions::default()
    };
    train(&cfg, &run, &opts).unwrap();
    let loaded = load_run(&run, &Device::Cpu).unwrap();
    assert_eq!(
        loaded.split.auxiliary_classes.len(),
        split.auxiliary_classes.len()
    );
    let reports = evaluate_run(&run, &Device::Cpu).unwrap();
    assert!(!reports.is_empty());
    for r in &reports {
        assert_eq!(r.queries, a_own.queries.len(), "{}", r.method);
        assert_eq!(r.classes.len(), own.novel_classes.len(), "{}", r.method);
    }

    // Distribution calibration from the main dataset's classes only: the extra classes'
    // statistics are left out, the main ones kept whole.
    let stats = BaseStats::load(&run.join("base_stats.safetensors")).unwrap();
    let n_own = own.auxiliary_classes.len();
    assert_eq!(stats.labels, (0..n_own + EXTRA.len()).collect::<Vec<_>>());
    let main = calibration_stats(
        stats.clone(),
        CalibrationBase::Main,
        &loaded.split,
        loaded.src.as_ref(),
    );
    assert_eq!(main.labels, (0..n_own).collect::<Vec<_>>());
    assert_eq!(main.means, stats.means[..n_own].to_vec());
    assert_eq!(main.covariances, stats.covariances[..n_own].to_vec());
    assert_eq!(main.counts, stats.counts[..n_own].to_vec());
    assert_eq!(main.classes, stats.classes[..n_own].to_vec());
    let all = calibration_stats(
        stats.clone(),
        CalibrationBase::All,
        &loaded.split,
        loaded.src.as_ref(),
    );
    assert_eq!(all.labels, stats.labels);
    let reports = evaluate_run_with(
        &run,
        &Device::Cpu,
        &EvalOverrides {
            calibration_base: Some(CalibrationBase::Main),
            ..EvalOverrides::default()
        },
    )
    .unwrap();
    assert!(reports.iter().any(|r| r.method == "calibrated-logreg"));

    // --text-agreement: every training class by default; with `main_only` the extra classes
    // leave the training pairs, and the novel classes' own pairs do not change at all.
    let pairs = |n: usize| n * n.saturating_sub(1) / 2;
    let nv = own.novel_classes.len();
    let all = text_agreement(&loaded, &AgreementOptions::default()).unwrap();
    let main_only = text_agreement(
        &loaded,
        &AgreementOptions {
            main_only: true,
            ..AgreementOptions::default()
        },
    )
    .unwrap();
    let counts = |rows: &[crossglg_infer::agreement::AgreementRow]| -> Vec<usize> {
        rows.iter().map(|r| r.count).collect()
    };
    let n_all = n_own + EXTRA.len();
    assert_eq!(
        counts(&all)[..3],
        [pairs(n_all), nv * n_all, pairs(nv)],
        "{all:?}"
    );
    assert_eq!(
        counts(&main_only)[..3],
        [pairs(n_own), nv * n_own, pairs(nv)],
        "{main_only:?}"
    );
    assert_eq!(all[2], main_only[2]);
    assert_eq!(all[5], main_only[5]);
}

#[test]
fn extra_text_comes_from_its_own_file_in_the_main_joint_order() {
    let dir = tempfile::tempdir().unwrap();
    reversed_ntu25(dir.path(), None);
    let descriptions = write_extra_descriptions(dir.path(), &EXTRA);
    let cfg = config(dir.path(), None, Guidance::Both);
    let ntu = Layout::load("ntu25").unwrap();
    let main: Vec<String> = MAIN.iter().map(|s| s.to_string()).collect();
    let extra: Vec<String> = EXTRA.iter().map(|s| s.to_string()).collect();
    // The same descriptions, once through the reversed file and once from the demo file itself.
    let via_extra = load_class_text(
        &cfg.text,
        &ntu,
        &main,
        &ExtraText {
            descriptions: vec![descriptions.as_path()],
            classes: extra.clone(),
        },
        &Device::Cpu,
    )
    .unwrap();
    let all: Vec<String> = main.iter().chain(&extra).cloned().collect();
    let direct = load_class_text(&cfg.text, &ntu, &all, &Default::default(), &Device::Cpu).unwrap();
    assert_eq!(via_extra.global.dims(), &[10, 32]);
    assert_eq!(common::max_diff(&via_extra.global, &direct.global), 0.0);
    assert_eq!(common::max_diff(&via_extra.local, &direct.local), 0.0);
    assert_eq!(
        common::max_diff(&via_extra.key_joints, &direct.key_joints),
        0.0
    );
    // A key-joint target must actually move with the joints: the reversed file's raw rows
    // differ from the reordered ones unless the reorder happened.
    let head = ntu.joint_index("head").unwrap();
    let kj = via_extra.key_joints.to_vec2::<f32>().unwrap();
    assert!(
        kj[MAIN.len() + 2][head] > 1.0 / 25.0,
        "`nod` weighs the head: {:?}",
        kj[MAIN.len() + 2]
    );

    // An extra class its file does not describe, and a class described by two extra files.
    let e = load_class_text(
        &cfg.text,
        &ntu,
        &main,
        &ExtraText {
            descriptions: vec![descriptions.as_path()],
            classes: vec!["march".into()],
        },
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("march") && e.contains("extra-descriptions.json"),
        "{e}"
    );
    let e = load_class_text(
        &cfg.text,
        &ntu,
        &main,
        &ExtraText {
            descriptions: vec![descriptions.as_path(), descriptions.as_path()],
            classes: vec!["turn".into()],
        },
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("turn") && e.contains("described"), "{e}");
}

#[test]
fn what_cannot_be_combined_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        progress: false,
        ..TrainOptions::default()
    };
    let err = |cfg: &TrainConfig| match open_source(cfg) {
        Err(e) => e.to_string(),
        Ok(_) => train(cfg, &dir.path().join("run"), &opts)
            .expect_err("must fail")
            .to_string(),
    };

    // A layout with a joint of another name.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (lp, renamed) = reversed_ntu25(&other, Some(("head", "skull")));
    let (_, packed) = write_extra(&other, &EXTRA, &renamed, &lp);
    let e = err(&config(dir.path(), extra(&packed, None), Guidance::None));
    assert!(
        e.contains(&packed.display().to_string()) && e.contains("same joints"),
        "{e}"
    );

    // A class the main dataset has too.
    let (lp, rev) = reversed_ntu25(dir.path(), None);
    let clash = dir.path().join("clash");
    std::fs::create_dir(&clash).unwrap();
    let (_, packed) = write_extra(&clash, &["turn", "wave"], &rev, &lp);
    let e = err(&config(dir.path(), extra(&packed, None), Guidance::None));
    assert!(
        e.contains(&packed.display().to_string()) && e.contains("`wave`"),
        "{e}"
    );

    // Text-guided training and an extra dataset without descriptions.
    let (_, packed) = write_extra(dir.path(), &EXTRA, &rev, &lp);
    let e = err(&config(dir.path(), extra(&packed, None), Guidance::Both));
    assert!(
        e.contains(&packed.display().to_string()) && e.contains("descriptions"),
        "{e}"
    );
    // Without text it trains.
    train(
        &config(dir.path(), extra(&packed, None), Guidance::None),
        &dir.path().join("plain"),
        &opts,
    )
    .unwrap();
}
