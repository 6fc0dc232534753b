//! Gallery, threshold calibration and streaming recognition, with a fake embedder so nothing
//! depends on a trained model.

use crossglg_data::mapping::Mapping;
use crossglg_data::Skeleton;
use crossglg_infer::embedder::{Describer, EmbedError, Embedder};
use crossglg_infer::gallery::{calibrate_rows, calibrate_threshold, Gallery};
use crossglg_infer::stream::{
    events_only, json_lines, run_stream, run_stream_with, Frame, FrameReader, PoseFormat,
    StreamConfig, StreamError, StreamEvent, StreamItem, StreamRecognizer,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[test]
fn gallery_recognizes_saves_and_loads() {
    let mut g = Gallery::new(3, "fake-model");
    g.model_hash = Some("abc123".into());
    g.enroll("wave", &[vec![1.0, 0.0, 0.0]], Some("wave.skeleton"))
        .unwrap();
    g.enroll("clap", &[vec![0.0, 2.0, 0.0]], Some("clap1.skeleton"))
        .unwrap();
    g.enroll("clap", &[vec![0.0, 1.0, 1.0]], Some("clap2.skeleton"))
        .unwrap();
    assert_eq!(g.classes, vec!["wave", "clap"]);
    assert_eq!(g.len(), 3);

    let r = g.recognize(&[0.0, 0.7, 0.7]).unwrap();
    assert_eq!((r.class.as_str(), r.class_index), ("clap", 1));
    assert!((r.similarity - 1.0).abs() < 1e-5);
    assert!((r.margin - 1.0).abs() < 1e-5, "{r:?}");
    assert!(!r.unknown);

    g.threshold = Some(0.8);
    // Closest to clap's second exemplar, cosine about 0.79.
    assert!(g.recognize(&[0.6, 0.6, 0.5]).unwrap().unknown);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.safetensors");
    g.save(&path).unwrap();
    let back = Gallery::load(&path).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.entries[2].source.as_deref(), Some("clap2.skeleton"));

    // Errors name the problem and the file.
    let e = g
        .enroll("x", &[vec![1.0, 2.0]], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dimension 2") && e.contains("`x`"), "{e}");
    let e = g.recognize(&[f32::NAN, 0.0, 0.0]).unwrap_err().to_string();
    assert!(e.contains("NaN"), "{e}");
    let bad = dir.path().join("broken.safetensors");
    std::fs::write(&bad, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").unwrap();
    let e = Gallery::load(&bad).unwrap_err().to_string();
    assert!(e.contains("broken.safetensors"), "{e}");
    let e = Gallery::load(&dir.path().join("nope.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.safetensors"), "{e}");

    assert!(g.remove_class("wave"));
    assert_eq!(g.classes, vec!["clap"]);
    assert!(g.entries.iter().all(|e| e.class == 0));
    // One class: margin counts the second best as -1.
    let r = g.recognize(&[0.0, 1.0, 0.0]).unwrap();
    assert!((r.margin - (r.similarity + 1.0)).abs() < 1e-6);
}

/// Base classes as random directions in 24-D with noise; one exemplar per class in the gallery.
/// (class means, gallery of one exemplar per class, held-out samples, their class names)
type World = (Vec<Vec<f32>>, Gallery, Vec<Vec<f32>>, Vec<String>);

fn base_world(seed: u64, classes: usize) -> World {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = 24;
    let means: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..d).map(|_| normal(&mut rng)).collect())
        .collect();
    let mut g = Gallery::new(d, "fake");
    let noisy = |rng: &mut StdRng, m: &[f32]| {
        m.iter()
            .map(|x| x + 0.35 * normal(rng))
            .collect::<Vec<f32>>()
    };
    for (c, m) in means.iter().enumerate() {
        g.enroll(&format!("base {c}"), &[noisy(&mut rng, m)], None)
            .unwrap();
    }
    let mut samples = Vec::new();
    let mut labels = Vec::new();
    for (c, m) in means.iter().enumerate() {
        for _ in 0..30 {
            samples.push(noisy(&mut rng, m));
            labels.push(format!("base {c}"));
        }
    }
    (means, g, samples, labels)
}

#[test]
fn threshold_calibration_meets_its_false_accept_target() {
    let (_, g, samples, labels) = base_world(11, 12);
    let c05 = calibrate_threshold(&g, &samples, &labels, 0.05).unwrap();
    let c20 = calibrate_threshold(&g, &samples, &labels, 0.20).unwrap();
    assert!(
        c05.false_accept_rate <= 0.05 && c20.false_accept_rate <= 0.20,
        "{c05:?} {c20:?}"
    );
    assert!(c05.threshold >= c20.threshold);
    assert!(c05.closed_set_accuracy > 0.95, "{c05:?}");
    assert!(c05.true_accept_rate > 0.8, "{c05:?}");
    assert_eq!(c05.impostors, 360);
    // The stored operating points agree with separate calibrations and are monotone.
    assert_eq!(c05.threshold_for(0.20), Some(c20.threshold));
    assert_eq!(c05.threshold_for(0.05), Some(c05.threshold));
    assert_eq!(c05.threshold_for(0.5), None);
    let pts = &c05.operating_points;
    assert!(pts.windows(2).all(
        |w| w[0].threshold >= w[1].threshold && w[0].true_accept_rate <= w[1].true_accept_rate
    ));
    assert!(pts
        .iter()
        .all(|p| p.false_accept_rate <= p.target_false_accept_rate));

    // Applied to actions the gallery has never seen (each sample its own random class), roughly
    // the target fraction is accepted.
    let (unseen, _, _, _) = base_world(99, 300);
    let mut g = g;
    g.threshold = Some(c05.threshold);
    let accepted = unseen
        .iter()
        .filter(|u| !g.recognize(u).unwrap().unknown)
        .count();
    assert!(
        (accepted as f64) < 0.15 * unseen.len() as f64,
        "{accepted} of {}",
        unseen.len()
    );

    let e = calibrate_threshold(&g, &samples[..1], &["nobody".to_string()], 0.05)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`nobody`"), "{e}");

    // On the same world's similarity rows, the row form gives the same calibration.
    let rows: Vec<Vec<f32>> = samples
        .iter()
        .map(|s| g.class_similarities(s).unwrap())
        .collect();
    let own: Vec<usize> = labels
        .iter()
        .map(|l| g.classes.iter().position(|c| c == l).unwrap())
        .collect();
    assert_eq!(calibrate_rows(&rows, &own, 0.05).unwrap(), c05);
}

/// The row form by hand: impostor scores are the best other class, classes without a score
/// take no part, and bad input is an error.
#[test]
fn threshold_calibration_from_rows() {
    let nan = f32::NAN;
    // own class 0 each; impostor scores 0.5, 0.1, 0.3, 0.2 (the NaN column never counts)
    let rows = vec![
        vec![0.9, 0.5, nan],
        vec![0.8, 0.1, nan],
        vec![0.2, 0.3, nan],
        vec![0.7, 0.2, nan],
    ];
    let c = calibrate_rows(&rows, &[0; 4], 0.25).unwrap();
    // one impostor of four may pass: the threshold sits just above the second highest (0.3)
    assert!(c.threshold > 0.3 && c.threshold < 0.30001, "{c:?}");
    assert_eq!(c.false_accept_rate, 0.25);
    // rows 0, 1 and 3 are recognised as class 0; all three score above the threshold
    assert_eq!((c.closed_set_accuracy, c.true_accept_rate), (0.75, 0.75));
    for (rows, own) in [
        (vec![], vec![]),
        (vec![vec![0.5, 0.2]], vec![2]),
        (vec![vec![0.5, nan]], vec![0]),
    ] {
        assert!(calibrate_rows(&rows, &own, 0.05).is_err(), "{rows:?}");
    }
    assert!(calibrate_rows(&[vec![0.5, 0.2]], &[0], 1.5).is_err());
}

/// Embeds a window as the one-hot of the joint with the largest mean x over the window.
struct OneHotOfLargestX {
    joints: usize,
}

impl Embedder for OneHotOfLargestX {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        skeletons
            .iter()
            .map(|sk| {
                if sk.joints != self.joints {
                    return Err(EmbedError::new(format!(
                        "expected {} joints, got {}",
                        self.joints, sk.joints
                    )));
                }
                let mean_x: Vec<f32> = (0..sk.joints)
                    .map(|v| {
                        (0..sk.frames).map(|t| sk.get(0, t, v, 0)).sum::<f32>() / sk.frames as f32
                    })
                    .collect();
                let best = (0..sk.joints)
                    .max_by(|&a, &b| mean_x[a].total_cmp(&mean_x[b]))
                    .unwrap();
                let mut e = vec![0.0; sk.joints];
                e[best] = 1.0;
                Ok(e)
            })
            .collect()
    }
    fn dim(&self) -> usize {
        self.joints
    }
}

fn one_hot_gallery(joints: usize) -> Gallery {
    let mut g = Gallery::new(joints, "one-hot");
    for j in 0..joints {
        let mut e = vec![0.0; joints];
        e[j] = 1.0;
        g.enroll(&format!("joint {j}"), &[e], None).unwrap();
    }
    g
}

fn jsonl_frames(n: usize, joints: usize, active: impl Fn(usize) -> usize) -> String {
    let mut s = String::new();
    for f in 0..n {
        let rows: Vec<String> = (0..joints)
            .map(|j| {
                if j == active(f) {
                    "[5.0, 1.0, 2.0]".to_string()
                } else {
                    "[0.5, 1.0, 2.0]".to_string()
                }
            })
            .collect();
        s.push_str(&format!(
            "{{\"t\": {:.3}, \"joints\": [{}]}}\n",
            f as f64 * 0.1,
            rows.join(", ")
        ));
        if f == 7 {
            s.push('\n'); // blank lines are skipped
        }
    }
    s
}

#[test]
fn stream_emits_one_event_per_hop_with_the_active_class() {
    let joints = 6;
    let input = jsonl_frames(60, joints, |f| if f < 30 { 2 } else { 4 });
    let cfg = StreamConfig {
        joints,
        window: 10,
        hop: 5,
        ..Default::default()
    };
    let emb = OneHotOfLargestX { joints };
    let g = one_hot_gallery(joints);
    let mut out = Vec::new();
    let mut windows_seen = 0;
    let summary = run_stream(
        input.as_bytes(),
        &cfg,
        &emb,
        &g,
        None,
        |sk| {
            windows_seen += 1;
            assert_eq!(sk.shape(), [1, 10, joints, 3]);
            Ok(sk)
        },
        events_only(json_lines(&mut out)),
    )
    .unwrap();
    assert_eq!(summary.frames, 60);
    assert!(
        summary.latency_p50_ms > 0.0 && summary.latency_p50_ms <= summary.latency_p95_ms,
        "{summary:?}"
    );
    assert_eq!(summary.events, 11); // windows end at frames 9, 14, ..., 59
    assert_eq!(windows_seen, 11);
    let events: Vec<StreamEvent> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 11);
    assert_eq!(events[0].frame_index, 9);
    assert!((events[0].t_start - 0.0).abs() < 1e-9 && (events[0].t_end - 0.9).abs() < 1e-9);
    assert_eq!(events[10].frame_index, 59);
    for e in &events {
        assert!(e.latency_ms >= 0.0);
        // Joint 4 wins once at least half the window lies past frame 30 (the tie at frame 34
        // goes to the later joint, `max_by`'s rule).
        let expect = if e.frame_index < 34 {
            "joint 2"
        } else {
            "joint 4"
        };
        assert_eq!(e.recognition.as_ref().unwrap().class, expect, "{e:?}");
    }
}

/// "Descriptions" that call each class by the mirror of its joint: class `joint k` is as like
/// a window as joint `joints − 1 − k` is active; `extra` never fits.
struct Mirror {
    classes: Vec<String>,
    joints: usize,
}

impl Describer for Mirror {
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn describe(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(skeletons
            .iter()
            .map(|sk| {
                self.classes
                    .iter()
                    .map(|c| match c.strip_prefix("joint ") {
                        Some(k) => {
                            let j = self.joints - 1 - k.parse::<usize>().unwrap();
                            (0..sk.frames).map(|t| sk.get(0, t, j, 0)).sum::<f32>()
                                / sk.frames as f32
                        }
                        None => -100.0,
                    })
                    .collect()
            })
            .collect())
    }
}

/// With descriptions every event also carries their answers: zero-shot among the described
/// classes, and the description prior, which at weight 0 is the gallery's decision and at 1
/// the descriptions'; a gallery class without a description turns the prior off.
#[test]
fn stream_answers_from_descriptions_too() {
    let joints = 6;
    let input = jsonl_frames(40, joints, |f| if f < 20 { 1 } else { 4 });
    let cfg = StreamConfig {
        joints,
        window: 10,
        hop: 5,
        ..Default::default()
    };
    let emb = OneHotOfLargestX { joints };
    let g = one_hot_gallery(joints);
    let mut names: Vec<String> = (0..joints).map(|j| format!("joint {j}")).collect();
    names.push("extra".into());
    let mirror = Mirror {
        classes: names.clone(),
        joints,
    };
    let events = |d: &Mirror, beta: f32| -> Vec<StreamEvent> {
        let mut out = Vec::new();
        run_stream_with(
            input.as_bytes(),
            &cfg,
            &emb,
            &g,
            None,
            Some((d, beta)),
            Ok,
            |item| {
                if let StreamItem::Event(e) = item {
                    out.push(e);
                }
                Ok(())
            },
        )
        .unwrap();
        out
    };
    let at0 = events(&mirror, 0.0);
    assert_eq!(at0.len(), 7);
    for e in &at0 {
        let d = e.described.as_ref().expect("answers from the descriptions");
        let active: usize = e.recognition.as_ref().unwrap().class[6..].parse().unwrap();
        assert_eq!(
            d.zero_shot.class,
            format!("joint {}", joints - 1 - active),
            "{e:?}"
        );
        assert_eq!(
            d.prior.as_ref().unwrap().class,
            e.recognition.as_ref().unwrap().class
        );
    }
    for e in events(&mirror, 1.0) {
        let d = e.described.unwrap();
        assert_eq!(d.prior.unwrap().class, d.zero_shot.class);
    }
    let partial = Mirror {
        classes: names[1..].to_vec(),
        joints,
    };
    for e in events(&partial, 0.5) {
        let d = e.described.unwrap();
        assert!(d.prior.is_none());
        assert_eq!(d.undescribed, ["joint 0"]);
    }
    // without descriptions the events carry none, and a weight out of range is refused
    let e = StreamRecognizer::new(&emb, &g, None, Ok, 2, 1)
        .unwrap()
        .with_descriptions(&mirror, 1.5)
        .err()
        .expect("weight 1.5")
        .to_string();
    assert!(e.contains("between 0 and 1"), "{e}");
    let plain = run_stream(input.as_bytes(), &cfg, &emb, &g, None, Ok, |item| {
        if let StreamItem::Event(e) = item {
            assert!(e.described.is_none());
            assert!(!serde_json::to_string(&e).unwrap().contains("described"));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(plain.events, 7);
}

/// An embedder that must not be called.
struct NeverEmbeds(usize);

impl Embedder for NeverEmbeds {
    fn embed(&self, _: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::new("embedded although the gallery is empty"))
    }
    fn dim(&self) -> usize {
        self.0
    }
}

/// With descriptions an empty gallery still streams: each window answers from them alone
/// (`recognition` null), with the same zero-shot answers as beside a gallery, and without
/// embedding at all. Without descriptions an empty gallery is refused before any input is read.
#[test]
fn stream_with_descriptions_needs_no_gallery() {
    let joints = 6;
    let input = jsonl_frames(40, joints, |f| if f < 20 { 1 } else { 4 });
    let cfg = StreamConfig {
        joints,
        window: 10,
        hop: 5,
        ..Default::default()
    };
    let mirror = Mirror {
        classes: (0..joints).map(|j| format!("joint {j}")).collect(),
        joints,
    };
    let run = |emb: &dyn Embedder, g: &Gallery| -> Vec<StreamEvent> {
        let mut out = Vec::new();
        run_stream_with(
            input.as_bytes(),
            &cfg,
            emb,
            g,
            None,
            Some((&mirror, 0.1)),
            Ok,
            events_only(|e| {
                out.push(e);
                Ok(())
            }),
        )
        .unwrap();
        out
    };
    let empty = Gallery::new(joints, "one-hot");
    let alone = run(&NeverEmbeds(joints), &empty);
    let beside = run(&OneHotOfLargestX { joints }, &one_hot_gallery(joints));
    assert_eq!(alone.len(), 7);
    assert_eq!(alone.len(), beside.len());
    for (a, b) in alone.iter().zip(&beside) {
        assert!(a.recognition.is_none() && b.recognition.is_some());
        let (da, db) = (a.described.as_ref().unwrap(), b.described.as_ref().unwrap());
        assert_eq!(da.zero_shot, db.zero_shot);
        assert!(da.prior.is_none() && da.undescribed.is_empty());
        let v = serde_json::to_value(a).unwrap();
        assert!(v["recognition"].is_null() && v["described"]["zero_shot"]["class"].is_string());
    }
    // without descriptions: refused at once, even on input that is all bad lines
    let e = run_stream(
        "oops\n".as_bytes(),
        &cfg,
        &OneHotOfLargestX { joints },
        &empty,
        None,
        Ok,
        |_| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("gallery is empty") && e.contains("descriptions"),
        "{e}"
    );
    let emb = OneHotOfLargestX { joints };
    let mut rec = StreamRecognizer::new(&emb, &empty, None, Ok, 2, 1).unwrap();
    assert!(rec.check().is_err());
    let frame = Frame {
        index: 0,
        line: 1,
        t: 0.0,
        joints: vec![[1.0, 0.0, 0.0]; joints],
        track: None,
    };
    assert!(rec.push(frame).is_err());
}

#[test]
fn stream_errors_name_the_line() {
    let joints = 3;
    let cfg = StreamConfig {
        joints,
        window: 2,
        hop: 1,
        strict: true,
        ..Default::default()
    };
    let emb = OneHotOfLargestX { joints };
    let g = one_hot_gallery(joints);
    let good = "{\"joints\": [[1,2,3],[1,2,3],[1,2,3]]}\n";
    let cases = [
        (format!("{good}{good}{{oops\n"), "line 3", "invalid JSON"),
        (
            format!("{good}{{\"joints\": [[1,2,3],[1,2,3]]}}\n"),
            "line 2",
            "2 joints, expected 3",
        ),
        (
            format!("{good}\n{{\"joints\": [[1,2],[1,2,3],[1,2,3]]}}\n"),
            "line 3",
            "joint 0 has 2 values",
        ),
    ];
    for (input, line, what) in cases {
        let e = run_stream(input.as_bytes(), &cfg, &emb, &g, None, Ok, |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(line) && e.contains(what), "{e}");
    }
    // Frames pushed by hand must keep one joint count.
    let mut rec = StreamRecognizer::new(&emb, &g, None, Ok, 2, 1).unwrap();
    let frame = |index, n| Frame {
        index,
        line: index + 1,
        t: 0.0,
        joints: vec![[1.0, 0.0, 0.0]; n],
        track: None,
    };
    assert!(rec.push(frame(0, 3)).unwrap().is_none());
    let e = rec.push(frame(1, 4)).unwrap_err().to_string();
    assert!(e.contains("4 joints") && e.contains("have 3"), "{e}");
    // A wrong-sized embedding is caught before any frame is read.
    let e = run_stream(
        good.as_bytes(),
        &cfg,
        &OneHotOfLargestX { joints: 4 },
        &g,
        None,
        Ok,
        |_| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("4-dimensional") && e.contains("3-dimensional"),
        "{e}"
    );
}

#[test]
fn csv_frames_2d_with_confidence() {
    let cfg = StreamConfig {
        format: PoseFormat::Csv,
        joints: 2,
        dims: 2,
        confidence: true,
        min_confidence: 0.5,
        fps: 10.0,
        flip_y: true,
        ..Default::default()
    };
    let text = "t,x0,y0,c0,x1,y1,c1\n0.5,1,2,0.9,3,4,0.1\n,1,2,0.9,,,\n,1,x,1,1,1,1\n";
    let mut r = FrameReader::new(text.as_bytes(), &cfg).unwrap();
    let f0 = r.next().unwrap().unwrap();
    assert_eq!((f0.t, f0.line), (0.5, 2));
    assert_eq!(f0.joints, vec![[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]]); // low confidence -> zero
    let f1 = r.next().unwrap().unwrap();
    assert!((f1.t - 0.1).abs() < 1e-12); // no t: index / fps
    assert_eq!(f1.joints[1], [0.0; 3]); // empty fields: missing joint
    let e = r.next().unwrap().unwrap_err().to_string();
    assert!(e.contains("line 4") && e.contains("field 3"), "{e}");
    assert!(r.next().is_none());
}

#[test]
fn stream_maps_coco_2d_input_to_the_model_layout() {
    let m = Mapping::load("coco17_to_ntu25").unwrap();
    let cfg = StreamConfig {
        joints: 17,
        dims: 2,
        window: 4,
        hop: 4,
        ..Default::default()
    };
    // Right wrist far to the right: NTU's right_wrist, right_hand, tip and thumb all copy it.
    let rw = m.source.joint_index("right_wrist").unwrap();
    let mut input = String::new();
    for _ in 0..8 {
        let rows: Vec<String> = (0..17)
            .map(|j| {
                if j == rw {
                    "[9, 1]".into()
                } else {
                    "[1, 1]".into()
                }
            })
            .collect();
        input.push_str(&format!("{{\"joints\": [{}]}}\n", rows.join(",")));
    }
    let emb = OneHotOfLargestX { joints: 25 };
    let g = one_hot_gallery(25);
    let mut out = Vec::new();
    let s = run_stream(
        input.as_bytes(),
        &cfg,
        &emb,
        &g,
        Some(&m),
        Ok,
        events_only(json_lines(&mut out)),
    )
    .unwrap();
    assert_eq!(s.events, 2);
    let first: StreamEvent =
        serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
    let j = first.recognition.as_ref().unwrap().class_index;
    assert!(
        m.target.joints[j].starts_with("right_"),
        "{}",
        m.target.joints[j]
    );
}

/// Twenty writers enroll one class each into one gallery file at the same time, through
/// `Gallery::update` (each opens its own lock handle, as separate processes would): every class
/// is there afterwards.
#[test]
fn concurrent_updates_lose_no_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.gallery");
    std::thread::scope(|s| {
        for i in 0..20 {
            let path = &path;
            s.spawn(move || {
                let e = vec![1.0 + i as f32, 0.5, -(i as f32)];
                Gallery::update(
                    path,
                    || Gallery::new(3, "m"),
                    |g| g.enroll(&format!("class{i}"), &[e], None),
                )
                .unwrap();
            });
        }
    });
    let g = Gallery::load(&path).unwrap();
    let mut names = g.classes.clone();
    names.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("class{i}")).collect();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(g.len(), 20);
}

#[test]
fn gallery_refuses_other_models_and_degenerate_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.gallery");
    let mut g = Gallery::new(2, "model-a");
    g.model_hash = Some("aaaa".into());
    for bad in [vec![0.0, 0.0], vec![f32::NAN, 1.0], vec![1e30, 1e30]] {
        let e = g.enroll("x", std::slice::from_ref(&bad), None).unwrap_err();
        assert!(
            e.to_string().contains("class `x`, embedding 0"),
            "{bad:?}: {e}"
        );
    }
    g.enroll("x", &[vec![1.0, 0.0]], None).unwrap();
    g.save(&path).unwrap();
    let g = Gallery::load(&path).unwrap();
    g.check_model(&path, 2, Some("aaaa")).unwrap();
    g.check_model(&path, 2, None).unwrap();
    let e = g
        .check_model(&path, 2, Some("bbbb"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("g.gallery") && e.contains("model-a") && e.contains("bbbb"),
        "{e}"
    );
    let e = g
        .check_model(&path, 3, Some("aaaa"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("width 2") && e.contains("3"), "{e}");
    // the layout it was enrolled from travels with it and is compared by joints
    let mut g = g;
    let ntu = crossglg_data::Layout::builtin("ntu25").unwrap();
    g.layout_toml = Some(ntu.to_toml());
    g.save(&path).unwrap();
    let g = Gallery::load(&path).unwrap();
    g.check_layout(&path, &ntu).unwrap();
    let mut renamed = ntu.clone();
    renamed.name = "mine".into();
    g.check_layout(&path, &renamed).unwrap();
    let e = g
        .check_layout(&path, &crossglg_data::Layout::builtin("body25").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ntu25") && e.contains("body25") && e.contains("joint 0"),
        "{e}"
    );
}

#[test]
fn rename_merges_and_counts_follow() {
    let mut g = Gallery::new(2, "m");
    g.enroll("a", &[vec![1.0, 0.0]], None).unwrap();
    g.enroll("b", &[vec![0.0, 1.0], vec![0.1, 1.0]], None)
        .unwrap();
    g.enroll("c", &[vec![1.0, 1.0]], None).unwrap();
    assert!(g.rename_class("a", "z").unwrap());
    assert_eq!(g.classes, ["z", "b", "c"]);
    assert!(!g.rename_class("nope", "y").unwrap());
    // into an existing class: merged
    assert!(g.rename_class("z", "c").unwrap());
    assert_eq!(g.classes, ["b", "c"]);
    assert_eq!(g.class_counts(), [2, 2]);
    assert_eq!(g.recognize(&[1.0, 0.05]).unwrap().class, "c");
    assert!(g.rename_class("b", " ").is_err());
}

/// Not strict (the default): a bad line is handed over as skipped, named by its line, and
/// every later frame still counts; an over-long line is passed over without being kept; input
/// with no good frame at all (JSON read as CSV) is an error, not "0 frames".
#[test]
fn stream_reports_bad_lines_and_goes_on() {
    let joints = 3;
    let cfg = StreamConfig {
        joints,
        window: 2,
        hop: 1,
        max_line_bytes: 200,
        ..Default::default()
    };
    let emb = OneHotOfLargestX { joints };
    let g = one_hot_gallery(joints);
    let good = "{\"joints\": [[1,2,3],[1,2,3],[1,2,3]]}\n";
    let long = format!("{{\"joints\": [{}]}}\n", vec!["[1,2,3]"; 5000].join(","));
    let mut input = format!("{good}{{oops\n{good}{long}").into_bytes();
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(format!("{good}{good}").as_bytes());
    let mut skipped = Vec::new();
    let mut events = 0;
    let s = run_stream(&input[..], &cfg, &emb, &g, None, Ok, |item| {
        match item {
            StreamItem::Event(_) => events += 1,
            StreamItem::Skipped(e) => skipped.push(e.to_string()),
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(
        (s.frames, s.skipped, s.events, events),
        (4, 3, 3, 3),
        "{skipped:?}"
    );
    assert!(
        skipped[0].contains("line 2") && skipped[0].contains("invalid JSON"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains("line 4") && skipped[1].contains("longer than 200"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].contains("line 5") && skipped[2].contains("not UTF-8"),
        "{skipped:?}"
    );

    // JSON fed as CSV: every line is bad, which is an error
    let csv = StreamConfig {
        format: PoseFormat::Csv,
        ..cfg.clone()
    };
    let e = run_stream(
        format!("{good}{good}").as_bytes(),
        &csv,
        &emb,
        &g,
        None,
        Ok,
        events_only(|_| Ok(())),
    )
    .unwrap_err();
    assert!(matches!(e, StreamError::NoFrames { skipped: 1, .. }), "{e}");

    // windows beyond the cap are refused before anything is allocated
    let huge = StreamConfig {
        window: 1_000_000_000,
        ..cfg.clone()
    };
    let e = run_stream(
        good.as_bytes(),
        &huge,
        &emb,
        &g,
        None,
        Ok,
        events_only(|_| Ok(())),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most 10000"), "{e}");
}

/// The stream's frame reader and the gallery file reader on random bytes and byte-level
/// mutations of valid input: nothing panics (every input is a frame, a skipped line or an
/// error).
mod mutations {
    use super::*;
    use proptest::prelude::*;

    fn seed_frames() -> String {
        jsonl_frames(6, 3, |f| f % 3)
    }

    fn seed_gallery() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.gallery");
        let mut g = Gallery::new(3, "m");
        g.enroll("a", &[vec![1.0, 0.0, 0.5]], Some("x.npy"))
            .unwrap();
        g.save(&p).unwrap();
        std::fs::read(&p).unwrap()
    }

    fn read_all(bytes: &[u8]) {
        for format in [PoseFormat::JsonLines, PoseFormat::Csv] {
            let cfg = StreamConfig {
                format,
                joints: 3,
                max_line_bytes: 256,
                ..Default::default()
            };
            for f in FrameReader::new(bytes, &cfg).unwrap().take(1000) {
                let _ = f;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gallery");
        std::fs::write(&p, bytes).unwrap();
        if let Ok(g) = Gallery::load(&p) {
            let _ = g.recognize(&[1.0, 0.0, 0.0]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            read_all(&bytes);
        }

        #[test]
        fn mutated_valid_input_never_panics(
            gallery in any::<bool>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let seed = if gallery { seed_gallery() } else { seed_frames().into_bytes() };
            let b = crossglg_data::fuzz::mutate(seed, &edits);
            read_all(&b);
        }
    }
}

/// Several tracked people on one stream: each track id has its own window and its own events,
/// whatever order a line lists people in; a track that leaves is dropped; untracked output is
/// unchanged (no `track` key).
#[test]
fn stream_follows_tracks_separately() {
    let joints = 6;
    let person = |active: usize| -> Vec<Vec<f64>> {
        (0..joints)
            .map(|v| vec![if v == active { 1.0 } else { 0.0 }, 0.0, 0.0])
            .collect()
    };
    let mut input = String::new();
    for f in 0..40 {
        // track 7 holds joint 1 up throughout; track 3 joint 5, and leaves after frame 19
        let mut people = vec![serde_json::json!({ "id": 7, "joints": person(1) })];
        if f < 20 {
            people.push(serde_json::json!({ "id": 3, "joints": person(5) }));
        }
        if f % 2 == 1 {
            people.reverse();
        }
        input += &serde_json::json!({ "t": f as f64 / 10.0, "people": people }).to_string();
        input.push('\n');
    }
    // a line with nobody on it is a frame in time for everyone
    input += "{\"people\": []}\n";
    let cfg = StreamConfig {
        joints,
        window: 10,
        hop: 10,
        ..Default::default()
    };
    let emb = OneHotOfLargestX { joints };
    let g = one_hot_gallery(joints);
    let mut events = Vec::new();
    let summary = run_stream(
        input.as_bytes(),
        &cfg,
        &emb,
        &g,
        None,
        Ok,
        events_only(|e: StreamEvent| {
            events.push(e);
            Ok(())
        }),
    )
    .unwrap();
    assert_eq!(summary.frames, 40, "lines with people, not people");
    let of = |track| -> Vec<(usize, String)> {
        events
            .iter()
            .filter(|e| e.track == Some(track))
            .map(|e| (e.frame_index, e.recognition.as_ref().unwrap().class.clone()))
            .collect()
    };
    let joint = |j: usize| format!("joint {j}");
    assert_eq!(
        of(7),
        [
            (9, joint(1)),
            (19, joint(1)),
            (29, joint(1)),
            (39, joint(1))
        ]
    );
    assert_eq!(of(3), [(9, joint(5)), (19, joint(5))]);
    assert_eq!(summary.events, 6);
    let line = serde_json::to_string(&events[0]).unwrap();
    assert!(line.contains("\"track\":"), "{line}");

    // a track gone for a whole window is forgotten; ids beyond MAX_TRACKS push out the stalest
    let mut rec = StreamRecognizer::new(&emb, &g, None, Ok, 4, 4).unwrap();
    let frame = |index, track| Frame {
        index,
        line: index + 1,
        t: 0.0,
        joints: vec![[1.0, 0.0, 0.0]; joints],
        track: Some(track),
    };
    for i in 0..100 {
        rec.push(frame(i, i as i64)).unwrap();
        assert!(rec.tracks() <= crossglg_infer::stream::MAX_TRACKS);
    }
    assert_eq!(rec.tracks(), 5, "only ids seen within the last window stay");

    // duplicate ids on one line and lines with neither joints nor people are named errors
    for (bad, what) in [
        (
            r#"{"people": [{"id": 1, "joints": []}, {"id": 1, "joints": []}]}"#,
            "appears twice",
        ),
        (r#"{"t": 0.5}"#, "either `joints` or `people`"),
    ] {
        let strict = StreamConfig {
            strict: true,
            ..cfg.clone()
        };
        let e = run_stream(bad.as_bytes(), &strict, &emb, &g, None, Ok, |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains(what), "{e}");
    }
}
