//! Preprocessing, packed files, protocols and the synthetic generator, end to end.
//! Real-data checks read the project's shared data folder through `CROSSGLG_DATA`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crossglg_data::layout::{builtin_names, Layout};
use crossglg_data::pack::{convert, Packed};
use crossglg_data::preprocess::{CenterMode, Mode, PreprocessConfig, Preprocessor, UpAxis};
use crossglg_data::protocol::{read_name_list, Exemplars, Split};
use crossglg_data::synth::{generate, generate_with_layout, SynthConfig, MOTIONS};
use crossglg_data::{Dataset, Sample, SampleMeta, Skeleton};

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("CROSSGLG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.is_dir(),
        "shared data folder {} not found: set CROSSGLG_DATA to the folder holding ntu-rgbd-meta/",
        dir.display()
    );
    dir
}

fn small_synth(layout: &str, seed: u64) -> Dataset {
    generate(&SynthConfig {
        layout: layout.into(),
        samples_per_class: 3,
        subjects: 2,
        views: 2,
        frames: [20, 40],
        seed,
        ..SynthConfig::default()
    })
    .unwrap()
}

fn ntu() -> Layout {
    Layout::builtin("ntu25").unwrap()
}

fn bits(s: &Skeleton) -> Vec<u32> {
    s.data.iter().map(|x| x.to_bits()).collect()
}

// ---------------------------------------------------------------- preprocessing

#[test]
fn config_defaults_round_trip_and_unknown_keys_fail() {
    let d = PreprocessConfig::default();
    assert_eq!((d.persons, d.frames), (2, 64));
    assert_eq!(d.crop.train_ratio, [0.5, 1.0]);
    assert_eq!(d.crop.test_ratio, 0.95);
    assert_eq!(d.rotate.max_angle, [0.3; 3]);
    assert_eq!(d.center, CenterMode::FirstFrame);
    assert!(!d.view.enabled);
    let back = PreprocessConfig::from_toml_str(&d.to_toml(), "x").unwrap();
    assert_eq!(back, d);
    let part =
        PreprocessConfig::from_toml_str("frames = 32\n[rotate]\nenabled = false\n", "p.toml")
            .unwrap();
    assert_eq!(part.frames, 32);
    assert!(!part.rotate.enabled && part.persons == 2);
    let e = PreprocessConfig::from_toml_str("[crop]\nwindow = 64\n", "cfg.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cfg.toml") && e.contains("window"), "{e}");
}

#[test]
fn output_shape_and_determinism() {
    let ds = small_synth("ntu25", 1);
    let p = Preprocessor::new(PreprocessConfig::default(), &ntu()).unwrap();
    let s = &ds.samples[0];
    let a = p
        .process(&s.meta.name, &s.skeleton, Mode::Train, 7, 0, 5)
        .unwrap();
    assert_eq!(a.shape(), [2, 64, 25, 3]);
    let b = p
        .process(&s.meta.name, &s.skeleton, Mode::Train, 7, 0, 5)
        .unwrap();
    assert_eq!(bits(&a), bits(&b));
    let c = p
        .process(&s.meta.name, &s.skeleton, Mode::Train, 7, 1, 5)
        .unwrap();
    assert_ne!(
        bits(&a),
        bits(&c),
        "another epoch draws another augmentation"
    );
    let t1 = p
        .process(&s.meta.name, &s.skeleton, Mode::Test, 7, 0, 5)
        .unwrap();
    let t2 = p
        .process(&s.meta.name, &s.skeleton, Mode::Test, 99, 3, 1)
        .unwrap();
    assert_eq!(bits(&t1), bits(&t2), "test mode does not depend on the RNG");
    // One body in, second person padded with zeros.
    assert!(a.data[64 * 25 * 3..].iter().all(|&x| x == 0.0));
}

#[test]
fn resize_matches_pytorch_linear_align_corners_false() {
    // One joint, one channel ramp 0,1,2,3; F.interpolate(size=8, linear, align_corners=False)
    // gives [0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3].
    let layout =
        Layout::from_toml_str("name='one'\ncenter='a'\njoints=['a']\nedges=[]\n", "one").unwrap();
    let mut cfg = PreprocessConfig {
        frames: 8,
        persons: 1,
        spatial_channels: 1,
        center: CenterMode::None,
        ..PreprocessConfig::default()
    };
    cfg.crop.test_ratio = 1.0;
    cfg.denoise.enabled = false;
    let p = Preprocessor::new(cfg.clone(), &layout).unwrap();
    let sk = Skeleton {
        persons: 1,
        frames: 4,
        joints: 1,
        channels: 1,
        data: vec![1.0, 2.0, 3.0, 4.0],
    };
    let out = p.process("ramp", &sk, Mode::Test, 0, 0, 0).unwrap();
    let want = [1.0, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.0];
    assert_eq!(out.data, want);
    // Downsampling 4 -> 2 picks the half-pixel centres 0.5 and 2.5.
    cfg.frames = 2;
    let p = Preprocessor::new(cfg, &layout).unwrap();
    assert_eq!(
        p.process("ramp", &sk, Mode::Test, 0, 0, 0).unwrap().data,
        [1.5, 3.5]
    );
}

#[test]
fn centre_crop_follows_ctr_gcn() {
    // 100 valid frames, ratio 0.95: bias = int(0.05 * 100 / 2) = 2, frames 2..98 (96 frames).
    let mut cfg = PreprocessConfig::default();
    let mut rng = crossglg_data::rng::sample_rng(0, 0, 0);
    let w = crossglg_data::preprocess::crop_window(100, &cfg.crop, 64, Mode::Test, &mut rng);
    assert_eq!(w, (2, 96));
    // CTR-GCN's own bound: crops of at least 64 frames.
    cfg.crop.min_frames = Some(64);
    for i in 0..200 {
        let mut rng = crossglg_data::rng::sample_rng(1, 0, i);
        let (b, l) =
            crossglg_data::preprocess::crop_window(300, &cfg.crop, 64, Mode::Train, &mut rng);
        assert!((150..=300).contains(&l) && b + l <= 300, "{b} {l}");
        let (b, l) =
            crossglg_data::preprocess::crop_window(40, &cfg.crop, 64, Mode::Train, &mut rng);
        assert_eq!(
            (b, l),
            (0, 40),
            "short sequences are taken whole (min 64 frames)"
        );
    }
}

#[test]
fn default_crop_bound_follows_the_window() {
    // A 36-frame sequence into a 32-frame window (the MSR / NW-UCLA case): the default bound is
    // half the window, so crops range over [18, 36] instead of always taking the whole sequence.
    let cfg = PreprocessConfig::default();
    assert_eq!(cfg.crop.min_frames_for(32), 16);
    let mut lengths = std::collections::BTreeSet::new();
    let mut begins = std::collections::BTreeSet::new();
    for i in 0..400 {
        let mut rng = crossglg_data::rng::sample_rng(3, 0, i);
        let (b, l) =
            crossglg_data::preprocess::crop_window(36, &cfg.crop, 32, Mode::Train, &mut rng);
        assert!((18..=36).contains(&l) && b + l <= 36, "{b} {l}");
        lengths.insert(l);
        begins.insert(b);
    }
    assert!(lengths.len() >= 15, "crop lengths barely vary: {lengths:?}");
    assert!(begins.len() >= 10, "crop offsets barely vary: {begins:?}");
    // Very short sequences still respect the bound (or are taken whole).
    let mut rng = crossglg_data::rng::sample_rng(3, 1, 0);
    let (_, l) = crossglg_data::preprocess::crop_window(20, &cfg.crop, 32, Mode::Train, &mut rng);
    assert!((16..=20).contains(&l), "{l}");

    // Through the preprocessor: with rotation off, training views of one 36-frame sequence
    // differ between epochs only because of the crop.
    let ds = generate(&SynthConfig {
        classes: vec!["wave".into()],
        samples_per_class: 1,
        frames: [36, 36],
        ..SynthConfig::default()
    })
    .unwrap();
    let layout = Layout::builtin("ntu25").unwrap();
    let mut pc = PreprocessConfig {
        frames: 32,
        persons: 1,
        ..PreprocessConfig::default()
    };
    pc.rotate.enabled = false;
    let p = Preprocessor::new(pc, &layout).unwrap();
    let s = &ds.samples[0];
    let views: Vec<Vec<f32>> = (0..4)
        .map(|epoch| {
            p.process(&s.meta.name, &s.skeleton, Mode::Train, 0, epoch, 0)
                .unwrap()
                .data
        })
        .collect();
    assert!(
        views.windows(2).any(|w| w[0] != w[1]),
        "every epoch saw the same crop"
    );
}

/// A standing body from the synthetic generator, with every frame shifted by `dx` in x.
fn person(frames: usize, seed: u64, moving: f32) -> Skeleton {
    let ds = generate(&SynthConfig {
        classes: vec!["wave".into()],
        samples_per_class: 1,
        subjects: 1,
        views: 1,
        frames: [frames, frames],
        noise: 0.0,
        seed,
        ..SynthConfig::default()
    })
    .unwrap();
    let mut s = ds.samples[0].skeleton.clone();
    for t in 0..s.frames {
        for v in 0..s.joints {
            let x = s.get(0, t, v, 0);
            s.set(0, t, v, 0, x + moving * t as f32 / frames as f32);
        }
    }
    s
}

fn stack_bodies(bodies: &[Skeleton]) -> Skeleton {
    let f = bodies[0].frames;
    let mut out = Skeleton::zeros(bodies.len(), f, 25, 3);
    let n = f * 25 * 3;
    for (m, b) in bodies.iter().enumerate() {
        out.data[m * n..(m + 1) * n].copy_from_slice(&b.data[..n]);
    }
    out
}

#[test]
fn noise_bodies_are_dropped_and_main_actor_has_most_motion() {
    let calm = person(50, 1, 0.0);
    let busy = person(50, 2, 2.0);
    // A "table": wide and flat, moving a lot.
    let mut table = Skeleton::zeros(1, 50, 25, 3);
    for t in 0..50 {
        for v in 0..25 {
            table.set(0, t, v, 0, v as f32 * 0.1 + t as f32 * 0.05);
            table.set(0, t, v, 1, 0.01 * (v % 2) as f32);
            table.set(0, t, v, 2, 3.0);
        }
    }
    // A body seen in 5 frames only.
    let mut blip = person(50, 3, 5.0);
    for t in 5..50 {
        for v in 0..25 {
            for c in 0..3 {
                blip.set(0, t, v, c, 0.0);
            }
        }
    }
    let raw = stack_bodies(&[table, calm.clone(), blip, busy.clone()]);
    let mut cfg = PreprocessConfig {
        frames: 50,
        center: CenterMode::None,
        ..PreprocessConfig::default()
    };
    cfg.crop.test_ratio = 1.0;
    let p = Preprocessor::new(cfg, &ntu()).unwrap();
    let out = p.process("four", &raw, Mode::Test, 0, 0, 0).unwrap();
    let n = 50 * 25 * 3;
    assert_eq!(
        bits(&Skeleton {
            persons: 1,
            frames: 50,
            joints: 25,
            channels: 3,
            data: out.data[..n].to_vec()
        }),
        bits(&busy)
    );
    assert_eq!(out.data[n..], calm.data[..]);
}

#[test]
fn first_frame_centring_and_rotation_keep_bone_lengths() {
    let s = person(64, 4, 1.0);
    let mut cfg = PreprocessConfig::default();
    cfg.crop.train_ratio = [1.0, 1.0];
    cfg.crop.test_ratio = 1.0;
    let l = ntu();
    let p = Preprocessor::new(cfg.clone(), &l).unwrap();
    let test = p.process("x", &s, Mode::Test, 0, 0, 0).unwrap();
    for c in 0..3 {
        assert!(test.get(0, 0, l.center, c).abs() < 1e-6);
    }
    // Global translation is kept by first-frame centring, removed per frame.
    assert!(test.get(0, 63, l.center, 0) > 0.5);
    cfg.center = CenterMode::PerFrame;
    let p2 = Preprocessor::new(cfg, &l).unwrap();
    let pf = p2.process("x", &s, Mode::Test, 0, 0, 0).unwrap();
    assert!(pf.get(0, 63, l.center, 0).abs() < 1e-6);
    let train = p.process("x", &s, Mode::Train, 3, 0, 0).unwrap();
    assert_ne!(bits(&train), bits(&test));
    let bone = |k: &Skeleton, t: usize, a: usize, b: usize| {
        (0..3)
            .map(|c| (k.get(0, t, a, c) - k.get(0, t, b, c)).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    for &(a, b) in &l.edges {
        for t in [0, 31, 63] {
            assert!((bone(&train, t, a, b) - bone(&test, t, a, b)).abs() < 1e-4);
        }
    }
}

#[test]
fn view_normalisation_aligns_spine_and_hips() {
    let l = ntu();
    let ds = small_synth("ntu25", 5);
    for up in [UpAxis::Z, UpAxis::Y] {
        let mut cfg = PreprocessConfig::default();
        cfg.view.enabled = true;
        cfg.view.up_axis = up;
        cfg.crop.test_ratio = 1.0;
        let p = Preprocessor::new(cfg, &l).unwrap();
        for s in ds.samples.iter().step_by(5) {
            let out = p
                .process(&s.meta.name, &s.skeleton, Mode::Test, 0, 0, 0)
                .unwrap();
            // Find the first output frame: it is the first input frame (no crop, resize from
            // the same start), so its hip line lies on x and its spine on the up axis.
            let j = |n: &str| l.joint_index(n).unwrap();
            let p3 = |v: usize| {
                [
                    out.get(0, 0, v, 0),
                    out.get(0, 0, v, 1),
                    out.get(0, 0, v, 2),
                ]
            };
            let (lh, rh, ls, rs) = (
                p3(j("left_hip")),
                p3(j("right_hip")),
                p3(j("left_shoulder")),
                p3(j("right_shoulder")),
            );
            let across: Vec<f32> = (0..3).map(|c| rh[c] - lh[c]).collect();
            let upv: Vec<f32> = (0..3)
                .map(|c| (ls[c] + rs[c] - lh[c] - rh[c]) / 2.0)
                .collect();
            // The spine lies exactly on the up axis; the hip line is on +x once its (small)
            // component along the spine is ignored.
            let (ui, other) = match up {
                UpAxis::Z => (2, 1),
                UpAxis::Y => (1, 2),
            };
            assert!(
                upv[ui] > 0.3 && upv[0].abs() < 1e-4 && upv[other].abs() < 1e-4,
                "{up:?} {upv:?}"
            );
            assert!(
                across[0] > 0.1 && across[other].abs() < 1e-4,
                "{up:?} {across:?}"
            );
        }
    }
    let mut cfg = PreprocessConfig::default();
    cfg.view.enabled = true;
    cfg.view.left = vec!["left_hipp".into()];
    let e = Preprocessor::new(cfg, &l).unwrap_err().to_string();
    assert!(e.contains("left_hipp"), "{e}");
}

#[test]
fn batch_is_nctvm_and_independent_of_order() {
    let ds = small_synth("ntu25", 6);
    let p = Preprocessor::new(PreprocessConfig::default(), &ntu()).unwrap();
    let fetch = |i: usize| {
        Ok::<_, std::convert::Infallible>((
            ds.samples[i].meta.name.clone(),
            ds.samples[i].skeleton.clone(),
        ))
    };
    let idx = [3usize, 0, 7, 12];
    let b = p.batch(&idx, fetch, Mode::Train, 11, 2).unwrap();
    assert_eq!(b.shape, [4, 3, 64, 25, 2]);
    let rev: Vec<usize> = idx.iter().rev().copied().collect();
    let r = p.batch(&rev, fetch, Mode::Train, 11, 2).unwrap();
    let per = 3 * 64 * 25 * 2;
    for (k, &i) in idx.iter().enumerate() {
        let s = p
            .process(
                &ds.samples[i].meta.name,
                &ds.samples[i].skeleton,
                Mode::Train,
                11,
                2,
                i as u64,
            )
            .unwrap();
        for (c, t, v, m) in [(0, 0, 0, 0), (2, 63, 24, 0), (1, 10, 7, 1), (0, 31, 3, 0)] {
            assert_eq!(
                b.x[k * per + ((c * 64 + t) * 25 + v) * 2 + m],
                s.get(m, t, v, c)
            );
        }
        assert_eq!(
            b.x[k * per..(k + 1) * per],
            r.x[(3 - k) * per..(4 - k) * per]
        );
    }
    let err = p
        .batch(&[0], |_| Err("disk on fire".to_string()), Mode::Test, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("disk on fire"));
}

#[test]
fn trailing_zero_padding_is_not_cropped_into_the_sample() {
    // 30 real frames followed by 70 zero frames: with empty-frame dropping off, only the
    // 30 valid frames are resized, so no output frame is all zero.
    let real = person(30, 12, 0.5);
    let mut padded = Skeleton::zeros(1, 100, 25, 3);
    padded.data[..real.data.len()].copy_from_slice(&real.data);
    let mut cfg = PreprocessConfig {
        drop_empty_frames: false,
        ..PreprocessConfig::default()
    };
    cfg.crop.test_ratio = 1.0;
    let p = Preprocessor::new(cfg, &ntu()).unwrap();
    for mode in [Mode::Test, Mode::Train] {
        let out = p.process("padded", &padded, mode, 0, 0, 0).unwrap();
        for t in 0..64 {
            assert!(
                out.frame(0, t).iter().any(|&x| x != 0.0),
                "{mode:?}: frame {t} is empty"
            );
        }
    }
}

#[test]
fn wrong_joint_count_is_an_error_naming_the_sample() {
    let p = Preprocessor::new(PreprocessConfig::default(), &ntu()).unwrap();
    let e = p
        .process(
            "S001C001P001R001A001",
            &Skeleton::zeros(1, 10, 20, 3),
            Mode::Test,
            0,
            0,
            0,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("S001C001P001R001A001") && e.contains("20 joints"),
        "{e}"
    );
    // An all-zero sample is valid input and gives zeros.
    let z = p
        .process(
            "empty",
            &Skeleton::zeros(1, 10, 25, 3),
            Mode::Train,
            0,
            0,
            0,
        )
        .unwrap();
    assert!(z.data.iter().all(|&x| x == 0.0));
}

// ---------------------------------------------------------------- packed files

#[test]
fn packed_round_trip_is_bit_identical() {
    let mut ds = small_synth("ntu25", 8);
    // A two-person, unlabelled sample with odd values and extra metadata.
    let mut two = Skeleton::zeros(2, 3, 25, 3);
    for (i, x) in two.data.iter_mut().enumerate() {
        *x = (i as f32 * 0.37).sin() * 1e-3 + if i % 11 == 0 { f32::MIN_POSITIVE } else { 0.0 };
    }
    two.data[5] = -0.0;
    let mut extra = BTreeMap::new();
    extra.insert(
        "source".to_string(),
        "hand-built \"quoted\" ünïcode".to_string(),
    );
    ds.samples.push(Sample {
        meta: SampleMeta {
            name: "odd".into(),
            label: None,
            subject: Some(9),
            view: None,
            setup: Some(3),
            replication: None,
            extra,
        },
        skeleton: two,
    });
    ds.samples.push(Sample {
        meta: SampleMeta {
            name: "empty".into(),
            label: Some(0),
            ..SampleMeta::default()
        },
        skeleton: Skeleton::zeros(0, 0, 25, 3),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synth.safetensors");
    let summary = convert(&ds, None, &path, false).unwrap();
    assert_eq!(summary.samples, ds.samples.len());
    let p = Packed::open(&path).unwrap();
    assert_eq!(p.len(), ds.samples.len());
    assert_eq!(p.classes(), &ds.classes[..]);
    assert_eq!(p.dataset_name(), "synth");
    assert_eq!(p.layout().unwrap(), ntu());
    for (i, s) in ds.samples.iter().enumerate() {
        let got = p.sample(i).unwrap();
        assert_eq!(got.meta, s.meta);
        assert_eq!(got.skeleton.shape(), s.skeleton.shape());
        assert_eq!(bits(&got.skeleton), bits(&s.skeleton), "sample {i}");
        assert_eq!(p.labels()[i], s.meta.label);
    }
    assert_eq!(p.to_dataset().unwrap().samples.len(), ds.samples.len());
    let e = p.sample(ds.samples.len()).unwrap_err().to_string();
    assert!(
        e.contains("synth.safetensors") && e.contains("out of range"),
        "{e}"
    );
    // Readable by the plain safetensors crate.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("labels").unwrap().shape(), &[ds.samples.len()]);
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn corrupt_and_foreign_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"hello, not a tensor file").unwrap();
    let e = Packed::open(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.bin") && e.contains("not a crossglg packed dataset"),
        "{e}"
    );

    let good = dir.path().join("good.safetensors");
    Packed::write(&small_synth("ntu25", 9), &good).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() - 4);
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes).unwrap();
    let e = Packed::open(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors"), "{e}");

    // A valid safetensors file from someone else.
    let foreign = dir.path().join("weights.safetensors");
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    safetensors::serialize_to_file([("w", view)], None, &foreign).unwrap();
    let e = Packed::open(&foreign).unwrap_err().to_string();
    assert!(
        e.contains("weights.safetensors") && e.contains("format"),
        "{e}"
    );

    let missing = dir.path().join("nope.safetensors");
    let e = Packed::open(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.safetensors"), "{e}");

    // Writing a dataset whose samples do not fit its layout fails before touching the disk.
    let mut ds = small_synth("ntu25", 9);
    ds.samples[1].skeleton = Skeleton::zeros(1, 4, 20, 3);
    let e = Packed::write(&ds, &dir.path().join("bad.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("20 joints"), "{e}");
    assert!(!dir.path().join("bad.safetensors").exists());
}

// ---------------------------------------------------------------- protocols

fn ntu_name(s: u32, c: u32, p: u32, r: u32, a: u32) -> String {
    format!("S{s:03}C{c:03}P{p:03}R{r:03}A{a:03}")
}

fn ntu_meta(name: &str) -> SampleMeta {
    let num = |k: char| -> u32 {
        let i = name.find(k).unwrap();
        name[i + 1..i + 4].parse().unwrap()
    };
    SampleMeta {
        name: name.into(),
        label: Some(num('A') as usize - 1),
        subject: Some(num('P')),
        view: Some(num('C')),
        setup: Some(num('S')),
        replication: Some(num('R')),
        ..SampleMeta::default()
    }
}

#[test]
fn ntu120_matches_the_official_protocol_files() {
    let dir = data_dir().join("ntu-rgbd-meta");
    let tsv = std::fs::read_to_string(dir.join("derived/ntu120_one_shot_protocol.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let split = Split::builtin("ntu120").unwrap();
    let want_novel: Vec<usize> = rows
        .iter()
        .map(|r| r[0].parse::<usize>().unwrap() - 1)
        .collect();
    assert_eq!(split.novel_classes, want_novel);
    assert_eq!(split.novel_classes.len(), 20);
    let Exemplars::Named(ex) = &split.exemplars else {
        panic!("named exemplars")
    };
    for r in &rows {
        assert_eq!(
            ex[&(r[0].parse::<usize>().unwrap() - 1)],
            vec![r[3].trim().to_string()]
        );
    }
    let anchors: BTreeSet<String> =
        std::fs::read_to_string(dir.join("one-shot-lists/one_shot_eval_anchors.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|p| {
                p.rsplit('/')
                    .next()
                    .unwrap()
                    .trim_end_matches(".skeleton.npy")
                    .to_string()
            })
            .collect();
    let ours: BTreeSet<String> = ex.values().flatten().cloned().collect();
    assert_eq!(ours, anchors);
    assert_eq!(split.auxiliary_classes.len(), 100);
    assert_eq!(split.sweep, vec![20, 40, 60, 80, 100]);

    // The third-party evaluation list is exactly our query set: novel-class samples minus the
    // exemplars and the official missing-skeleton samples.
    let missing =
        read_name_list(&dir.join("NTU_RGBD120_samples_with_missing_skeletons.txt")).unwrap();
    assert_eq!(missing.len(), 535);
    let eval: Vec<String> =
        std::fs::read_to_string(dir.join("one-shot-lists/one_shot_eval_set.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|p| {
                p.rsplit('/')
                    .next()
                    .unwrap()
                    .trim_end_matches(".skeleton.npy")
                    .to_string()
            })
            .collect();
    let mut metas: Vec<SampleMeta> = eval
        .iter()
        .chain(anchors.iter())
        .map(|n| ntu_meta(n))
        .collect();
    // Missing-skeleton samples and auxiliary samples around them.
    metas.extend(missing.iter().map(|n| ntu_meta(n)));
    // One more sample per class from a setup NTU does not have.
    for a in 1..=120 {
        metas.push(ntu_meta(&ntu_name(33, 1, 3, 1, a)));
    }
    let split = split.with_excluded(missing.iter().cloned());
    let asg = split.apply(&metas).unwrap();
    let queries: BTreeSet<&str> = asg
        .queries
        .iter()
        .map(|&i| metas[i].name.as_str())
        .collect();
    let eval_set: BTreeSet<&str> = eval.iter().map(String::as_str).collect();
    let extra: BTreeSet<String> = split
        .novel_classes
        .iter()
        .map(|&c| ntu_name(33, 1, 3, 1, c as u32 + 1))
        .collect();
    assert_eq!(queries.len(), eval_set.len() + extra.len());
    assert!(eval_set.iter().all(|n| queries.contains(n)));
    assert!(extra.iter().all(|n| queries.contains(n.as_str())));
    let ex_names: BTreeSet<&str> = asg
        .exemplars
        .iter()
        .map(|&i| metas[i].name.as_str())
        .collect();
    assert!(ex_names.iter().all(|n| !queries.contains(n)));
    let novel: BTreeSet<usize> = split.novel_classes.iter().copied().collect();
    assert!(asg
        .train
        .iter()
        .all(|&i| !novel.contains(&metas[i].label.unwrap())));
    assert!(asg
        .train
        .iter()
        .chain(&asg.queries)
        .all(|&i| !split.excluded.contains(&metas[i].name)));
    assert_eq!(
        asg.train.len(),
        100,
        "one S033 sample per auxiliary class; missing ones excluded"
    );
}

#[test]
fn sweeps_validation_splits_and_ntu60() {
    let mut metas = Vec::new();
    for a in 1..=120u32 {
        let s = if a <= 60 { 1 } else { 18 };
        metas.push(ntu_meta(&ntu_name(s, 3, 8, 1, a)));
        metas.push(ntu_meta(&ntu_name(s + 1, 1, 2, 2, a)));
    }
    let full = Split::builtin("ntu120").unwrap();
    for &k in &full.sweep {
        let s = full.clone().with_auxiliary(k).unwrap();
        assert_eq!(s.auxiliary_classes, full.auxiliary_classes[..k]);
        let a = s.apply(&metas).unwrap();
        let classes: BTreeSet<usize> = a.train.iter().map(|&i| metas[i].label.unwrap()).collect();
        assert_eq!(classes.len(), k);
        assert_eq!(a.queries.len(), 20);
    }
    assert!(full.clone().with_auxiliary(101).is_err());
    assert_eq!(full.auxiliary_classes[..3], [1, 2, 3]);

    let val = Split::builtin("ntu120-val").unwrap();
    assert_eq!(val.novel_classes.len(), 20);
    assert_eq!(val.novel_classes[..2], [1, 7]);
    let test_novel: BTreeSet<usize> = full.novel_classes.iter().copied().collect();
    assert!(val
        .auxiliary_classes
        .iter()
        .all(|c| !test_novel.contains(c)));
    assert_eq!(val.auxiliary_classes.len(), 80);
    let a = val.apply(&metas).unwrap();
    assert!(a
        .train
        .iter()
        .chain(&a.queries)
        .chain(&a.exemplars)
        .all(|&i| !test_novel.contains(&metas[i].label.unwrap())));
    // The validation exemplars exist in NTU-120 (none is in the missing-skeleton list).
    let missing: BTreeSet<String> = read_name_list(
        &data_dir().join("ntu-rgbd-meta/NTU_RGBD120_samples_with_missing_skeletons.txt"),
    )
    .unwrap()
    .into_iter()
    .collect();
    let Exemplars::Named(ex) = &val.exemplars else {
        panic!()
    };
    assert!(ex.values().flatten().all(|n| !missing.contains(n)));

    let n60 = Split::builtin("ntu60").unwrap();
    assert_eq!(
        n60.novel_classes,
        vec![0, 6, 12, 18, 24, 30, 36, 42, 48, 54]
    );
    assert_eq!(n60.auxiliary_classes.len(), 50);
    assert_eq!(n60.sweep, vec![10, 20, 30, 40, 50]);
    let metas60: Vec<SampleMeta> = metas
        .iter()
        .filter(|m| m.label.unwrap() < 60)
        .cloned()
        .collect();
    let a = n60.apply(&metas60).unwrap();
    assert_eq!(
        (a.exemplars.len(), a.queries.len(), a.train.len()),
        (10, 10, 100)
    );
    let table = n60.table(None);
    assert!(
        table.contains("S001C003P008R001A055")
            && table.contains("auxiliary sweep: 10, 20, 30, 40, 50")
    );
    for name in crossglg_data::protocol::BUILTIN {
        Split::builtin(name).unwrap().validate().unwrap();
    }
    assert!(Split::load("nope")
        .unwrap_err()
        .to_string()
        .contains("ntu120"));
}

#[test]
fn msr_and_nwucla_splits_on_synthetic_data() {
    let ds = generate(&SynthConfig {
        classes: MOTIONS[..10].iter().map(|m| m.name.to_string()).collect(),
        samples_per_class: 6,
        subjects: 2,
        views: 3,
        frames: [10, 12],
        ..SynthConfig::default()
    })
    .unwrap();
    let metas: Vec<SampleMeta> = ds.samples.iter().map(|s| s.meta.clone()).collect();
    let a = Split::builtin("nwucla").unwrap().apply(&metas).unwrap();
    for (&i, c) in a.exemplars.iter().zip([0, 2, 4, 6, 8]) {
        let m = &metas[i];
        assert_eq!(
            (m.label, m.subject, m.view, m.replication),
            (Some(c), Some(1), Some(1), Some(1))
        );
    }
    assert_eq!(a.queries.len(), 5 * 6 - 5);
    assert_eq!(a.train.len(), 5 * 6);
    let msr = Split::builtin("msr").unwrap();
    assert_eq!(msr.novel_classes, vec![0, 4, 8, 12, 16]);
    assert_eq!(msr.auxiliary_classes.len(), 15);
}

// ---------------------------------------------------------------- synthetic data

#[test]
fn synth_is_deterministic_and_shaped() {
    let a = small_synth("ntu25", 42);
    let b = small_synth("ntu25", 42);
    let c = small_synth("ntu25", 43);
    assert_eq!(a, b);
    assert_ne!(a.samples[0].skeleton, c.samples[0].skeleton);
    assert_eq!(a.classes.len(), MOTIONS.len());
    assert_eq!(a.samples.len(), MOTIONS.len() * 3);
    for s in &a.samples {
        let k = &s.skeleton;
        assert_eq!((k.persons, k.joints, k.channels), (1, 25, 3));
        assert!((20..=40).contains(&k.frames));
        assert!(k.data.iter().all(|x| x.is_finite()));
    }
    let names: BTreeSet<&str> = a.samples.iter().map(|s| s.meta.name.as_str()).collect();
    assert_eq!(names.len(), a.samples.len(), "sample names are unique");
    assert!(MOTIONS.iter().all(|m| !m.description.is_empty()));
    let e = generate(&SynthConfig {
        classes: vec!["moonwalk".into()],
        ..SynthConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("moonwalk"));
}

#[test]
fn synth_works_on_every_builtin_layout() {
    for name in builtin_names() {
        let layout = Layout::builtin(name).unwrap();
        let ds = generate_with_layout(
            &SynthConfig {
                samples_per_class: 1,
                subjects: 1,
                views: 1,
                frames: [16, 16],
                noise: 0.0,
                ..SynthConfig::default()
            },
            &layout,
        )
        .unwrap();
        assert_eq!(ds.layout, name);
        for s in &ds.samples {
            let k = &s.skeleton;
            assert_eq!(k.joints, layout.num_joints());
            assert!(k.data.iter().all(|x| x.is_finite()));
            // Plausible: a body 1.3-2.1 m tall, the head end above the feet.
            let ys: Vec<f32> = (0..k.joints).map(|v| k.get(0, 0, v, 1)).collect();
            let h = ys.iter().cloned().fold(f32::MIN, f32::max)
                - ys.iter().cloned().fold(f32::MAX, f32::min);
            assert!((1.2..2.2).contains(&h), "{name}: height {h}");
        }
        // Preprocessing accepts it.
        let p = Preprocessor::new(PreprocessConfig::default(), &layout).unwrap();
        let s = &ds.samples[0];
        assert_eq!(
            p.process(&s.meta.name, &s.skeleton, Mode::Train, 0, 0, 0)
                .unwrap()
                .shape(),
            [2, 64, layout.num_joints(), 3]
        );
    }
}

/// Per body part: mean squared velocity, vertical and horizontal. Vertical stays vertical under
/// the camera yaw the views use, so the features survive view changes.
fn energy_features(layout: &Layout, k: &Skeleton) -> Vec<f32> {
    let mut f = Vec::new();
    for joints in layout.parts.values() {
        let (mut vert, mut hor) = (0.0f32, 0.0f32);
        for t in 1..k.frames {
            for &v in joints {
                let d: Vec<f32> = (0..3)
                    .map(|c| k.get(0, t, v, c) - k.get(0, t - 1, v, c))
                    .collect();
                vert += d[1] * d[1];
                hor += d[0] * d[0] + d[2] * d[2];
            }
        }
        let n = (k.frames * joints.len()) as f32;
        f.push((1.0 + 1e4 * vert / n).ln());
        f.push((1.0 + 1e4 * hor / n).ln());
    }
    f
}

#[test]
fn classes_are_distinguishable_by_part_energy() {
    let layout = ntu();
    let ds = generate(&SynthConfig {
        samples_per_class: 18,
        subjects: 6,
        views: 3,
        seed: 3,
        ..SynthConfig::default()
    })
    .unwrap();
    let k = ds.classes.len();
    let feats: Vec<Vec<f32>> = ds
        .samples
        .iter()
        .map(|s| energy_features(&layout, &s.skeleton))
        .collect();
    let train = |s: &Sample| s.meta.subject.unwrap() <= 4;
    let dim = feats[0].len();
    let mut means = vec![vec![0.0f32; dim]; k];
    let mut counts = vec![0usize; k];
    for (s, f) in ds.samples.iter().zip(&feats) {
        if train(s) {
            let l = s.meta.label.unwrap();
            counts[l] += 1;
            for (m, x) in means[l].iter_mut().zip(f) {
                *m += x;
            }
        }
    }
    for (m, &c) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|x| *x /= c as f32);
    }
    let (mut right, mut total) = (0, 0);
    for (s, f) in ds.samples.iter().zip(&feats) {
        if train(s) {
            continue;
        }
        let d = |m: &Vec<f32>| m.iter().zip(f).map(|(a, b)| (a - b).powi(2)).sum::<f32>();
        let best = (0..k)
            .min_by(|&a, &b| d(&means[a]).total_cmp(&d(&means[b])))
            .unwrap();
        right += usize::from(best == s.meta.label.unwrap());
        total += 1;
    }
    let acc = right as f32 / total as f32;
    eprintln!(
        "nearest-class-mean accuracy on held-out subjects: {acc:.3} (chance {:.3})",
        1.0 / k as f32
    );
    assert!(acc > 6.0 / k as f32, "accuracy {acc} with {k} classes");
}

// ---------------------------------------------------------------- real data, end to end

#[test]
fn nwucla_and_msr_read_split_pack_and_batch() {
    use crossglg_data::read::{msr::read_msr_dir, ucla::read_ucla_dir, DirOptions};
    let dir = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    for (split_name, (ds, _)) in [
        (
            "nwucla",
            read_ucla_dir(&dir.join("nw-ucla/all_sqe"), &DirOptions::default()).unwrap(),
        ),
        (
            "msr",
            read_msr_dir(
                &dir.join("msr-action3d/MSRAction3DSkeletonReal3D"),
                &DirOptions::default(),
            )
            .unwrap(),
        ),
    ] {
        let metas: Vec<SampleMeta> = ds.samples.iter().map(|s| s.meta.clone()).collect();
        let split = Split::builtin(split_name).unwrap();
        let a = split.apply(&metas).unwrap();
        assert_eq!(a.exemplars.len(), 5, "{split_name}");
        for (&i, &c) in a.exemplars.iter().zip(&split.novel_classes) {
            let m = &metas[i];
            assert_eq!(
                (m.label, m.subject),
                (Some(c), Some(1)),
                "{split_name}: {}",
                m.name
            );
            if split_name == "nwucla" {
                assert_eq!(m.view, Some(1), "{}", m.name);
            }
            // No sample of the same class, subject (and view) has an earlier replication.
            assert!(!metas.iter().any(|o| o.label == m.label
                && o.subject == m.subject
                && (split_name == "msr" || o.view == m.view)
                && o.replication < m.replication));
            assert!(!a.queries.contains(&i));
        }
        assert_eq!(
            a.train.len() + a.queries.len() + 5,
            ds.samples.len(),
            "{split_name}: every sample assigned once"
        );
        eprintln!(
            "{split_name}: {} train, {} queries, exemplars {:?}",
            a.train.len(),
            a.queries.len(),
            a.exemplars
                .iter()
                .map(|&i| &metas[i].name)
                .collect::<Vec<_>>()
        );

        let path = tmp.path().join(format!("{split_name}.safetensors"));
        convert(&ds, None, &path, false).unwrap();
        let packed = Packed::open(&path).unwrap();
        assert_eq!(packed.len(), ds.samples.len());
        assert_eq!(packed.metas(), &metas[..]);
        for i in [0, ds.samples.len() / 2, ds.samples.len() - 1] {
            assert_eq!(
                bits(&packed.skeleton(i).unwrap()),
                bits(&ds.samples[i].skeleton)
            );
        }
        let layout = packed.layout().unwrap();
        let p = Preprocessor::new(PreprocessConfig::default(), &layout).unwrap();
        let batch = p
            .batch(
                &a.train[..16],
                |i| {
                    packed
                        .sample(i)
                        .map(|s| (s.meta.name, s.skeleton))
                        .map_err(|e| e.to_string())
                },
                Mode::Train,
                0,
                0,
            )
            .unwrap();
        assert_eq!(batch.shape, [16, 3, 64, layout.num_joints(), 2]);
        assert!(batch.x.iter().all(|x| x.is_finite()));
        // Centred data: coordinates of the first frame are within a body's reach of the origin.
        assert!(batch.x.iter().all(|x| x.abs() < 5.0));
    }
}

#[test]
fn ntu_samples_preprocess_with_both_actors() {
    use crossglg_data::read::{ntu::read_ntu_dir, DirOptions};
    let opts = DirOptions {
        max_bodies: 4,
        ..DirOptions::default()
    };
    let (ds, _) = read_ntu_dir(&data_dir().join("ntu-rgbd-samples"), &opts).unwrap();
    assert_eq!(ds.samples.len(), 5);
    let l = ntu();
    let p = Preprocessor::new(PreprocessConfig::default(), &l).unwrap();
    for (i, s) in ds.samples.iter().enumerate() {
        let out = p
            .process(&s.meta.name, &s.skeleton, Mode::Test, 0, 0, i as u64)
            .unwrap();
        assert_eq!(out.shape(), [2, 64, 25, 3]);
        let person_sum = |m: usize| {
            out.data[m * 64 * 75..(m + 1) * 64 * 75]
                .iter()
                .map(|x| x.abs())
                .sum::<f32>()
        };
        assert!(person_sum(0) > 0.0);
        let two = s.meta.name.ends_with("A058");
        assert_eq!(person_sum(1) > 0.0, two, "{}: second person", s.meta.name);
        // Centred near the origin at the start, and a body of human size.
        let c: f32 = (0..3)
            .map(|k| out.get(0, 0, l.center, k).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!(c < 0.1, "{}: centre at {c}", s.meta.name);
        let head = l.joint_index("head").unwrap();
        let foot = l.joint_index("left_foot").unwrap();
        let h = out.get(0, 0, head, 1) - out.get(0, 0, foot, 1);
        assert!((0.8..2.2).contains(&h), "{}: head-foot {h}", s.meta.name);
    }
}
