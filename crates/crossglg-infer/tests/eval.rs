//! One-shot evaluation, distribution calibration and reports on synthetic Gaussian clusters
//! whose answers are known.

use std::collections::BTreeMap;

use crossglg_infer::calibrate::{
    evaluate_calibrated, BaseStats, CalibrationConfig, Classifier, NegativeFeatures, PowerTransform,
};
use crossglg_infer::eval::{evaluate_cosine, OneShotSet};
use crossglg_infer::report::EvalReport;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn around(rng: &mut StdRng, mean: &[f32], sigma: &[f32]) -> Vec<f32> {
    mean.iter()
        .zip(sigma)
        .map(|(m, s)| m + s * normal(rng))
        .collect()
}

fn names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("class {i}")).collect()
}

#[test]
fn cosine_nn_is_near_perfect_on_separated_clusters() {
    let mut rng = StdRng::seed_from_u64(1);
    let (k, d) = (6, 16);
    let means: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..d).map(|_| 10.0 * normal(&mut rng)).collect())
        .collect();
    let sigma = vec![0.5; d];
    let mut set = OneShotSet {
        classes: names(k),
        ..Default::default()
    };
    for (c, m) in means.iter().enumerate() {
        set.exemplars.push(around(&mut rng, m, &sigma));
        set.exemplar_labels.push(c);
        for _ in 0..40 {
            set.queries.push(around(&mut rng, m, &sigma));
            set.query_labels.push(c);
        }
    }
    let r = evaluate_cosine(&set).unwrap();
    assert_eq!(r.queries, 240);
    assert!(r.accuracy > 0.97, "accuracy {}", r.accuracy);
    assert_eq!(r.confusion.iter().flatten().sum::<usize>(), 240);
}

#[test]
fn cosine_nn_is_near_chance_on_noise() {
    let mut rng = StdRng::seed_from_u64(2);
    let (k, d) = (5, 16);
    let sigma = vec![1.0; d];
    let zero = vec![0.0; d];
    let mut set = OneShotSet {
        classes: names(k),
        ..Default::default()
    };
    for c in 0..k {
        set.exemplars.push(around(&mut rng, &zero, &sigma));
        set.exemplar_labels.push(c);
        for _ in 0..200 {
            set.queries.push(around(&mut rng, &zero, &sigma));
            set.query_labels.push(c);
        }
    }
    let r = evaluate_cosine(&set).unwrap();
    // Chance is 0.2; with 1000 queries the standard error is about 0.013.
    assert!(
        (0.14..0.26).contains(&r.accuracy),
        "accuracy {}",
        r.accuracy
    );
}

/// Novel classes sit between pairs of nearby base classes; every exemplar is drawn far out in
/// its class's high-variance direction. Calibration pulls each exemplar's mean towards its
/// neighbouring base classes and borrows their covariance, so it should beat nearest-exemplar.
struct Outliers {
    base_emb: Vec<Vec<f32>>,
    base_labels: Vec<usize>,
    set: OneShotSet,
}

fn outlier_problem(seed: u64) -> Outliers {
    let mut rng = StdRng::seed_from_u64(seed);
    let (k, d) = (4, 8);
    // Large positive offset keeps features non-negative (Tukey's transform as in the paper).
    let offset = 30.0;
    // Anisotropic spread shared by all classes: dimension 0 is the high-variance one.
    let mut sigma = vec![0.6f32; d];
    sigma[0] = 2.5;
    let mut base_emb = Vec::new();
    let mut base_labels = Vec::new();
    let mut set = OneShotSet {
        classes: names(k),
        ..Default::default()
    };
    for c in 0..k {
        let mut mu = vec![offset; d];
        mu[1 + c] += 4.0;
        // Two base classes straddling the novel mean.
        for (b, sign) in [(2 * c, 1.0f32), (2 * c + 1, -1.0f32)] {
            let mut bm = mu.clone();
            bm[5.min(d - 1)] += sign * 0.5;
            for _ in 0..60 {
                base_emb.push(around(&mut rng, &bm, &sigma));
                base_labels.push(b);
            }
        }
        // Outlier exemplar: 2.2 sigma along the high-variance axis, towards the other classes.
        let mut ex = mu.clone();
        ex[0] += if c % 2 == 0 { 2.2 } else { -2.2 } * sigma[0];
        ex[1 + (c + 1) % k] += 1.5;
        set.exemplars.push(ex);
        set.exemplar_labels.push(c);
        for _ in 0..60 {
            set.queries.push(around(&mut rng, &mu, &sigma));
            set.query_labels.push(c);
        }
    }
    Outliers {
        base_emb,
        base_labels,
        set,
    }
}

#[test]
fn calibration_helps_when_exemplars_are_outliers() {
    let p = outlier_problem(3);
    let base = BaseStats::from_embeddings(&p.base_emb, &p.base_labels).unwrap();
    assert_eq!(base.num_classes(), 8);
    let cosine = evaluate_cosine(&p.set).unwrap();
    let cfg = CalibrationConfig {
        samples_per_class: 300,
        ..Default::default()
    };
    let logreg = evaluate_calibrated(&p.set, &base, &cfg).unwrap();
    let gauss = evaluate_calibrated(
        &p.set,
        &base,
        &CalibrationConfig {
            classifier: Classifier::Gaussian,
            ..cfg.clone()
        },
    )
    .unwrap();
    eprintln!(
        "cosine {:.3}, calibrated logreg {:.3}, calibrated gaussian {:.3}",
        cosine.accuracy, logreg.accuracy, gauss.accuracy
    );
    assert!(
        logreg.accuracy > cosine.accuracy + 0.15,
        "{} vs {}",
        logreg.accuracy,
        cosine.accuracy
    );
    assert!(
        gauss.accuracy > cosine.accuracy + 0.15,
        "{} vs {}",
        gauss.accuracy,
        cosine.accuracy
    );
    assert!(logreg.accuracy > 0.8 && gauss.accuracy > 0.8);
    assert_eq!(logreg.settings["k"], 2);
    // Seeded: the same settings give the same predictions.
    let again = evaluate_calibrated(&p.set, &base, &cfg).unwrap();
    assert_eq!(again.confusion, logreg.confusion);
}

#[test]
fn calibration_without_outliers_does_not_hurt_much() {
    // Same geometry, but the exemplar is a typical member of its class.
    let mut p = outlier_problem(4);
    for (e, &c) in p.set.exemplars.iter_mut().zip(&p.set.exemplar_labels) {
        let mut mu = vec![30.0f32; e.len()];
        mu[1 + c] += 4.0;
        *e = mu;
    }
    let base = BaseStats::from_embeddings(&p.base_emb, &p.base_labels).unwrap();
    let cosine = evaluate_cosine(&p.set).unwrap();
    let cal = evaluate_calibrated(&p.set, &base, &CalibrationConfig::default()).unwrap();
    assert!(
        cal.accuracy > 0.9 && cal.accuracy + 0.05 >= cosine.accuracy,
        "{} vs {}",
        cal.accuracy,
        cosine.accuracy
    );
}

#[test]
fn base_stats_round_trip_and_errors_name_the_file() {
    let p = outlier_problem(5);
    let mut names = BTreeMap::new();
    names.insert(0usize, "drink water".to_string());
    let t = PowerTransform {
        negatives: NegativeFeatures::Shift,
        ..Default::default()
    };
    let base = BaseStats::from_embeddings_with(&p.base_emb, &p.base_labels, &names, t).unwrap();
    assert_eq!(base.classes[0], "drink water");
    assert_eq!(base.transform.shift.len(), 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base_stats.safetensors");
    base.save(&path).unwrap();
    let back = BaseStats::load(&path).unwrap();
    assert_eq!(back, base);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temp file left behind"
    );

    let bad = dir.path().join("garbage.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let e = BaseStats::load(&bad).unwrap_err().to_string();
    assert!(e.contains("garbage.safetensors"), "{e}");
    let e = BaseStats::load(&dir.path().join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    // One sample cannot give a covariance.
    let e = BaseStats::from_embeddings(&[vec![1.0], vec![2.0], vec![3.0]], &[0, 0, 1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("base class 1"), "{e}");
}

#[test]
fn reports_write_json_and_markdown() {
    let classes = names(3);
    let mut r = EvalReport::from_predictions(
        "cosine-nn",
        &classes,
        vec![1, 1, 1],
        &[0, 1, 2, 2],
        &[0, 1, 2, 0],
    )
    .unwrap();
    r.settings.insert("seed".into(), 7.into());
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("report.json");
    let m = dir.path().join("report.md");
    r.write_json(&j).unwrap();
    r.write_markdown(&m).unwrap();
    assert_eq!(EvalReport::read_json(&j).unwrap(), r);
    let md = std::fs::read_to_string(&m).unwrap();
    assert!(
        md.contains("75.00 %") && md.contains("| 2 class 2 | 1 | 0 | 1 |"),
        "{md}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    // A parent that is a regular file cannot be created as a directory, even by root
    // (CI runs as root, so a permission-based failure would not fail there).
    std::fs::write(dir.path().join("blocker"), b"x").unwrap();
    let e = r
        .write_json(&dir.path().join("blocker/r.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocker/r.json"), "{e}");
}

/// Timing at the NTU-120 one-shot scale (100 base classes × 100 samples, 20 novel classes,
/// 256-D, 750 samples per class). Ignored by default: run with
/// `cargo test -p crossglg-infer --test eval -- --ignored --nocapture ntu_scale`.
#[test]
#[ignore]
fn ntu_scale_timing() {
    let mut rng = StdRng::seed_from_u64(12);
    let (d, nb, per, k) = (256, 100, 100, 20);
    let sigma = vec![0.3f32; d];
    let mean = |rng: &mut StdRng| (0..d).map(|_| normal(rng).abs()).collect::<Vec<f32>>();
    let mut emb = Vec::new();
    let mut labels = Vec::new();
    for b in 0..nb {
        let m = mean(&mut rng);
        for _ in 0..per {
            emb.push(around(&mut rng, &m, &sigma));
            labels.push(b);
        }
    }
    let t = std::time::Instant::now();
    let base = BaseStats::from_embeddings(&emb, &labels).unwrap();
    eprintln!(
        "base stats ({} samples, {d}-D): {:.2?}",
        emb.len(),
        t.elapsed()
    );
    let mut set = OneShotSet {
        classes: names(k),
        ..Default::default()
    };
    for c in 0..k {
        let m = mean(&mut rng);
        set.exemplars.push(around(&mut rng, &m, &sigma));
        set.exemplar_labels.push(c);
        for _ in 0..250 {
            set.queries.push(around(&mut rng, &m, &sigma));
            set.query_labels.push(c);
        }
    }
    let t = std::time::Instant::now();
    let cos = evaluate_cosine(&set).unwrap();
    eprintln!(
        "cosine NN ({} queries): {:.2?}, acc {:.3}",
        set.queries.len(),
        t.elapsed(),
        cos.accuracy
    );
    for cfg in [
        CalibrationConfig::default(),
        CalibrationConfig {
            classifier: Classifier::Gaussian,
            ..Default::default()
        },
    ] {
        let t = std::time::Instant::now();
        let r = evaluate_calibrated(&set, &base, &cfg).unwrap();
        eprintln!("{}: {:.2?}, acc {:.3}", r.method, t.elapsed(), r.accuracy);
    }
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    base.save(&dir.path().join("b.safetensors")).unwrap();
    let _ = BaseStats::load(&dir.path().join("b.safetensors")).unwrap();
    eprintln!("base stats save + load: {:.2?}", t.elapsed());
}
