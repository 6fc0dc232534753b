//! Every picture in both formats: SVG well-formed with the expected text, PNG decoding with the
//! requested size and rasterised text.

use std::path::Path;

use crossglg_data::{Layout, Skeleton};
use crossglg_infer::eval::{evaluate_cosine, OneShotSet};
use crossglg_plot as plot;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Four 8-D Gaussian classes ("class 0".."class 3"), one exemplar and 30 queries each.
fn clusters(seed: u64) -> OneShotSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut set = OneShotSet {
        classes: (0..4).map(|i| format!("class {i}")).collect(),
        ..Default::default()
    };
    for c in 0..4 {
        let mut mu = [0.0f32; 8];
        mu[c] = 3.0;
        let mut draw = || {
            mu.iter()
                .map(|m| m + normal(&mut rng))
                .collect::<Vec<f32>>()
        };
        set.exemplars.push(draw());
        set.exemplar_labels.push(c);
        for _ in 0..30 {
            set.queries.push(draw());
            set.query_labels.push(c);
        }
    }
    set
}

fn check_svg(path: &Path, needle: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(
        s.contains("<svg") && s.trim_end().ends_with("</svg>"),
        "{}",
        path.display()
    );
    assert!(s.contains(needle), "{} lacks {needle}", path.display());
    assert_eq!(s.matches("<text").count(), s.matches("</text>").count());
}

fn check_png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    (img.width(), img.height())
}

/// Non-white pixels in a horizontal band (to see that text was actually rasterised).
fn ink_in_rows(path: &Path, y0: u32, y1: u32) -> usize {
    let img = image::open(path).unwrap().to_rgb8();
    (y0..y1.min(img.height()))
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0 != [255, 255, 255])
        .count()
}

#[test]
fn plots_confusion_curves_and_pca_as_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    // `CROSSGLG_PLOT_DIR=/some/dir` keeps the pictures for a look.
    let keep = std::env::var_os("CROSSGLG_PLOT_DIR");
    let set = clusters(6);
    let r = evaluate_cosine(&set).unwrap();
    for ext in ["svg", "png"] {
        let f = dir.path().join(format!("confusion.{ext}"));
        plot::plot_report_confusion(&f, &r).unwrap();
        let g = dir.path().join(format!("pca.{ext}"));
        plot::plot_embedding_map(
            &g,
            &set.exemplars,
            &set.exemplar_labels,
            &set.queries,
            &set.query_labels,
            &set.classes,
            "novel classes",
        )
        .unwrap();
        if ext == "svg" {
            check_svg(&f, "cosine-nn");
            check_svg(&g, "class 3");
        } else {
            check_png(&f);
            assert_eq!(check_png(&g), (900, 760));
            // The title sits in the top 40 rows of the confusion plot; only text draws there.
            assert!(
                ink_in_rows(&f, 0, 40) > 50,
                "no title text rendered in the PNG"
            );
        }
    }
    let metrics = dir.path().join("metrics.jsonl");
    let mut lines = String::new();
    for step in 0..50 {
        lines.push_str(&format!(
            "{{\"epoch\": {}, \"step\": {step}, \"loss\": {}, \"lr\": 0.1, \"acc\": {}, \"tag\": \"x\"}}\n",
            step / 10,
            2.0 / (1.0 + step as f64),
            step as f64 / 50.0
        ));
    }
    std::fs::write(&metrics, lines).unwrap();
    let series = plot::read_metrics_jsonl(&metrics).unwrap();
    assert_eq!(series.x_name, "step");
    assert_eq!(
        series.series.keys().collect::<Vec<_>>(),
        vec!["acc", "loss", "lr"]
    );
    plot::plot_training_curves(&dir.path().join("curves.svg"), &metrics, &[]).unwrap();
    check_svg(&dir.path().join("curves.svg"), "loss");
    let only = ["loss".to_string()];
    plot::plot_training_curves(&dir.path().join("curves.png"), &metrics, &only).unwrap();
    check_png(&dir.path().join("curves.png"));

    let e = plot::plot_training_curves(&dir.path().join("x.svg"), &metrics, &["los".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no metric `los`") && e.contains("acc, loss, lr"),
        "{e}"
    );
    std::fs::write(&metrics, "{\"step\": 1, \"loss\": 1}\n{oops\n").unwrap();
    let e = plot::read_metrics_jsonl(&metrics).unwrap_err().to_string();
    assert!(e.contains("metrics.jsonl line 2"), "{e}");
    let e = plot::plot_report_confusion(&dir.path().join("c.gif"), &r)
        .unwrap_err()
        .to_string();
    assert!(e.contains("c.gif"), "{e}");
    // Only the requested files: no temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    if let Some(k) = keep {
        for name in [
            "confusion.svg",
            "confusion.png",
            "pca.svg",
            "pca.png",
            "curves.svg",
            "curves.png",
        ] {
            std::fs::copy(dir.path().join(name), Path::new(&k).join(name)).unwrap();
        }
    }
}

#[test]
fn pca_finds_the_dominant_direction() {
    let mut rng = StdRng::seed_from_u64(8);
    let rows: Vec<Vec<f32>> = (0..200)
        .map(|_| {
            let a = 5.0 * normal(&mut rng);
            vec![a, a, 0.1 * normal(&mut rng), 0.1 * normal(&mut rng)]
        })
        .collect();
    let p = plot::pca_2d(&rows).unwrap();
    // PC1 carries nearly all the variance: |pc1| ≈ sqrt(2)·|a|.
    for (r, q) in rows.iter().zip(&p) {
        assert!(
            (q[0].abs() - r[0].abs() * 2f32.sqrt()).abs() < 0.5,
            "{q:?} vs {r:?}"
        );
    }
}

#[test]
fn joint_importance_pictures() {
    let layout = Layout::load("ntu25").unwrap();
    let mut w = vec![0.01f32; 25];
    w[layout.joint_index("right_hand").unwrap()] = 0.5;
    w[layout.joint_index("right_wrist").unwrap()] = 0.3;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("jid.png");
    plot::plot_joint_importance(&png, &layout, None, &w, "wave: joint importance").unwrap();
    let img = image::load_from_memory(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (640, 720));
    // A real frame as the pose.
    let mut sk = Skeleton::zeros(1, 1, 25, 3);
    for v in 0..25 {
        sk.set(0, 0, v, 0, (v % 5) as f32 * 0.1);
        sk.set(0, 0, v, 1, (v / 5) as f32 * 0.2);
    }
    let pose = plot::pose_from_skeleton(&sk, 0, 0).unwrap();
    let svg = dir.path().join("jid.svg");
    plot::plot_joint_importance(&svg, &layout, Some(&pose), &w, "frame 0").unwrap();
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains("<svg") && s.contains("right_hand 0.50") && s.contains("<circle"));
    let e = plot::plot_joint_importance(&png, &layout, None, &w[..3], "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 weights") && e.contains("25 joints"), "{e}");
    // The tree view places every joint at a distinct position.
    if let Some(k) = std::env::var_os("CROSSGLG_PLOT_DIR") {
        for name in ["jid.svg", "jid.png"] {
            std::fs::copy(dir.path().join(name), std::path::Path::new(&k).join(name)).unwrap();
        }
    }
    // Every shipped layout has a rest pose with distinct joint positions; an unknown name
    // falls back to the tree view.
    for name in ["ntu25", "nwucla20", "msr20", "coco17", "mediapipe33"] {
        let l = Layout::load(name).unwrap();
        let p = plot::rest_pose(&l).unwrap_or_else(|| panic!("{name} has no rest pose"));
        for a in 0..p.len() {
            for b in 0..a {
                assert!(
                    p[a] != p[b],
                    "{name}: {} and {} overlap",
                    l.joints[a],
                    l.joints[b]
                );
            }
        }
    }
    let mut renamed = layout.clone();
    renamed.joints[0] = "tail".into();
    assert!(plot::rest_pose(&renamed).is_none());
    let t = plot::tree_pose(&layout);
    for a in 0..25 {
        for b in 0..a {
            assert!(
                t[a] != t[b],
                "{} and {} overlap",
                layout.joints[a],
                layout.joints[b]
            );
        }
    }
}
