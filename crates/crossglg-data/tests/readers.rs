//! Layouts and readers: real files under CROSSGLG_DATA, synthetic malformed files for every
//! format (each must give an error naming the file, never a panic), and property tests that
//! feed random bytes and mutated valid files to every parser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossglg_data::inspect::{inspect_dataset, inspect_path, InspectOptions};
use crossglg_data::layout::{builtin_names, Layout};
use crossglg_data::read::msr::{parse_msr, read_msr, read_msr_dir};
use crossglg_data::read::npy::{parse_npy, read_npy_dir, write_npy_f32};
use crossglg_data::read::ntu::{
    parse_ntu_recording, read_missing_list, read_ntu, read_ntu_dir, read_ntu_recording,
};
use crossglg_data::read::pickle::unpickle;
use crossglg_data::read::pyskl::{parse_pyskl, read_pyskl};
use crossglg_data::read::ucla::{parse_ucla, read_ucla, read_ucla_dir};
use crossglg_data::read::{DirOptions, Quality, ReadError};
use crossglg_data::Skeleton;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The shared data folder: `CROSSGLG_DATA`, else `<workspace>/../shared/data`. Tests that need
/// it fail (not skip) when it is missing.
fn data_dir() -> PathBuf {
    let dir = std::env::var_os("CROSSGLG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.is_dir(),
        "real-data tests need the shared data folder: set CROSSGLG_DATA (looked in {})",
        dir.display()
    );
    dir
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Asserts that an error names the file (by its file name) and returns its text.
fn names_file(err: ReadError, file: &str) -> String {
    let text = err.to_string();
    assert!(
        text.contains(file),
        "error does not name the file `{file}`: {text}"
    );
    text
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// Layouts

#[test]
fn every_builtin_is_a_tree_with_parts_and_round_trips() {
    assert_eq!(
        builtin_names(),
        [
            "ntu25",
            "nwucla20",
            "msr20",
            "coco17",
            "mediapipe33",
            "body25",
            "openpose18",
            "h36m17"
        ]
    );
    let sizes = BTreeMap::from([
        ("ntu25", 25),
        ("nwucla20", 20),
        ("msr20", 20),
        ("coco17", 17),
        ("mediapipe33", 33),
        ("body25", 25),
        ("openpose18", 18),
        ("h36m17", 17),
    ]);
    for name in builtin_names() {
        let l = Layout::builtin(name).unwrap();
        assert_eq!(l.num_joints(), sizes[name], "{name}");
        l.check_tree()
            .unwrap_or_else(|e| panic!("{name} is not a tree: {e}"));
        for part in ["head", "torso", "arms", "hands", "legs", "feet"] {
            let p = l.parts.get(part);
            assert!(
                p.is_some_and(|p| !p.is_empty()),
                "{name}: part {part} empty"
            );
        }
        assert_eq!(l.left.len(), l.right.len(), "{name}");
        assert!(!l.left.is_empty(), "{name}");
        // Left/right pairs are mirror names.
        for (&a, &b) in l.left.iter().zip(&l.right) {
            assert_eq!(
                l.joints[a].replace("left", "right"),
                l.joints[b],
                "{name}: {} is not paired with its mirror",
                l.joints[a]
            );
        }
        let back = Layout::from_toml_str(&l.to_toml(), "roundtrip").unwrap();
        assert_eq!(back, l, "{name} round trip");
        // Loading by name and via a file give the same layout.
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "mine.toml", l.to_toml().as_bytes());
        assert_eq!(Layout::load(p.to_str().unwrap()).unwrap(), l);
    }
}

#[test]
fn kinect_v1_layouts_use_the_shared_joint_names_in_their_own_orders() {
    let names = [
        "hip_center",
        "spine",
        "shoulder_center",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "left_hand",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "right_hand",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
    ];
    let ucla = Layout::builtin("nwucla20").unwrap();
    let msr = Layout::builtin("msr20").unwrap();
    assert_eq!(ucla.joints, names, "NW-UCLA uses the Kinect SDK order");
    let mut sorted_msr = msr.joints.clone();
    sorted_msr.sort();
    let mut sorted = names.map(String::from).to_vec();
    sorted.sort();
    assert_eq!(sorted_msr, sorted);
    assert_ne!(msr.joints, ucla.joints, "the two orders differ");
    assert_eq!(msr.joints[0], "left_shoulder");
    assert_eq!(msr.joints[19], "head");
    // Same body tree, only renumbered.
    let edge_names = |l: &Layout| {
        let mut e: Vec<(String, String)> = l
            .edges
            .iter()
            .map(|&(a, b)| (l.joints[a].clone(), l.joints[b].clone()))
            .collect();
        e.sort();
        e
    };
    assert_eq!(edge_names(&msr), edge_names(&ucla));
}

#[test]
fn mirror_swaps_sides_and_flips_x() {
    let l = Layout::builtin("ntu25").unwrap();
    let p = l.mirror_permutation();
    let ls = l.joint_index("left_shoulder").unwrap();
    let rs = l.joint_index("right_shoulder").unwrap();
    assert_eq!((p[ls], p[rs]), (rs, ls));
    assert_eq!(p[l.center], l.center);
    for (i, &j) in p.iter().enumerate() {
        assert_eq!(p[j], i, "mirror is an involution");
    }
    let mut sk = Skeleton::zeros(1, 2, 25, 3);
    sk.set(0, 1, ls, 0, 0.5);
    sk.set(0, 1, ls, 1, 0.25);
    let m = l.mirror(&sk, Some(0)).unwrap();
    assert_eq!(m.get(0, 1, rs, 0), -0.5);
    assert_eq!(m.get(0, 1, rs, 1), 0.25);
    assert_eq!(m.get(0, 1, ls, 0), 0.0);
    let back = l.mirror(&m, Some(0)).unwrap();
    assert_eq!(
        back.data,
        sk.data.iter().map(|x| x + 0.0).collect::<Vec<_>>()
    );
    assert!(l.mirror(&Skeleton::zeros(1, 1, 20, 3), Some(0)).is_none());
}

#[test]
fn user_layout_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str); 5] = [
        ("syntax.toml", "name = 'x'\njoints = [", "syntax.toml"),
        (
            "unknown.toml",
            "name='x'\ncenter='a'\njoints=['a','b']\nedges=[['a','zz']]\n",
            "`zz`",
        ),
        (
            "sides.toml",
            "name='x'\ncenter='a'\njoints=['a','b','c']\nedges=[['b','a'],['c','a']]\nleft=['b']\nright=[]\n",
            "pair up",
        ),
        (
            "extra_field.toml",
            "name='x'\ncenter='a'\njoints=['a']\nedges=[]\ncolour='red'\n",
            "colour",
        ),
        ("nojoints.toml", "name='x'\ncenter='a'\njoints=[]\nedges=[]\n", "no joints"),
    ];
    for (file, text, what) in cases {
        let p = write(dir.path(), file, text.as_bytes());
        let err = Layout::load(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains(file), "{err}");
        assert!(err.contains(what), "{err}");
    }
    let missing = dir.path().join("absent.toml");
    let err = Layout::load(missing.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.toml"), "{err}");
    // A cycle loads (the file is well-formed) but is not a tree.
    let p = write(
        dir.path(),
        "cycle.toml",
        b"name='cyc'\ncenter='a'\njoints=['a','b','c']\nedges=[['b','a'],['c','b'],['a','c']]\n",
    );
    let l = Layout::load(p.to_str().unwrap()).unwrap();
    assert!(l.check_tree().unwrap_err().to_string().contains("cyc"));
}

// ---------------------------------------------------------------------------------------------
// Real data: NTU RGB+D

#[test]
fn ntu_real_files_frames_bodies_joints_and_metadata() {
    let dir = data_dir().join("ntu-rgbd-samples");
    let expected = [
        ("S001C001P001R001A011", 82, 1),
        ("S001C003P008R002A058", 70, 2),
        ("S002C001P003R001A003", 100, 1),
        ("S003C001P015R001A034", 71, 1),
        ("S004C002P003R001A017", 124, 1),
    ];
    for (name, frames, bodies) in expected {
        let s = read_ntu(&dir.join(format!("{name}.skeleton")), 2).unwrap();
        assert_eq!(s.skeleton.shape(), [bodies, frames, 25, 3], "{name}");
        assert_eq!(s.meta.name, name);
        let action: usize = name[17..].parse().unwrap();
        assert_eq!(s.meta.label, Some(action - 1));
        assert_eq!(s.meta.setup, Some(name[1..4].parse().unwrap()));
        assert_eq!(s.meta.view, Some(name[5..8].parse().unwrap()));
        assert_eq!(s.meta.subject, Some(name[9..12].parse().unwrap()));
        assert_eq!(s.meta.replication, Some(name[13..16].parse().unwrap()));
        assert!(s.skeleton.data.iter().all(|x| x.is_finite()));
    }
    // Capping at one body keeps the first of the two equally long tracks.
    let one = read_ntu(&dir.join("S001C003P008R002A058.skeleton"), 1).unwrap();
    assert_eq!(one.skeleton.persons, 1);
}

#[test]
fn ntu_full_records_keep_every_field() {
    let p = data_dir().join("ntu-rgbd-samples/S001C003P008R002A058.skeleton");
    let rec = read_ntu_recording(&p).unwrap();
    assert_eq!(rec.frames.len(), 70);
    assert_eq!(rec.joints, 25);
    let tracks = rec.body_tracks();
    assert_eq!(tracks.len(), 2, "two body ids");
    assert_eq!(tracks[0], (72057594037944738, 70));
    let b = &rec.frames[0].bodies[0];
    assert_eq!(b.info.body_id, 72057594037944738);
    assert_eq!(
        (
            b.info.clipped_edges,
            b.info.hand_left_confidence,
            b.info.hand_left_state,
            b.info.hand_right_confidence,
            b.info.hand_right_state,
            b.info.is_restricted,
            b.info.tracking_state
        ),
        (0, 1, 1, 1, 1, 0, 2)
    );
    assert_eq!((b.info.lean_x, b.info.lean_y), (0.01119184, -0.256052));
    let j = b.joints[0];
    assert_eq!(
        [
            j.x,
            j.y,
            j.z,
            j.depth_x,
            j.depth_y,
            j.color_x,
            j.color_y,
            j.orientation_w,
            j.orientation_x,
            j.orientation_y,
            j.orientation_z
        ],
        [
            0.7201789, 0.1647426, 3.561895, 336.5812, 192.8021, 1184.537, 489.4118, -0.2218947,
            0.03421978, 0.968875, -0.1042736
        ]
    );
    assert_eq!(j.tracking_state, 2);
    // The sample view holds the same xyz.
    let s = read_ntu(&p, 2).unwrap();
    assert_eq!(s.skeleton.get(0, 0, 0, 0), 0.7201789);
    assert_eq!(s.skeleton.get(0, 0, 3, 2), 3.396255);
}

#[test]
fn ntu_folder_and_missing_lists() {
    let data = data_dir();
    let (ds, rep) = read_ntu_dir(&data.join("ntu-rgbd-samples"), &DirOptions::default()).unwrap();
    assert_eq!((rep.files, rep.read, ds.samples.len()), (5, 5, 5));
    assert!(rep.skipped.is_empty() && rep.flagged.is_empty(), "{rep:?}");
    assert_eq!(ds.classes.len(), 120);
    assert_eq!(ds.classes[57], "handshaking");
    assert_eq!(ds.layout, "ntu25");

    let m60 =
        read_missing_list(&data.join("ntu-rgbd-meta/NTU_RGBD_samples_with_missing_skeletons.txt"))
            .unwrap();
    assert_eq!(m60.len(), 302);
    assert_eq!(m60[0], "S001C002P005R002A008");
    let m120 = read_missing_list(
        &data.join("ntu-rgbd-meta/NTU_RGBD120_samples_with_missing_skeletons.txt"),
    )
    .unwrap();
    assert_eq!(m120.len(), 535);

    // Exclusion by name.
    let opts = DirOptions {
        exclude: ["S002C001P003R001A003".to_string()].into(),
        ..Default::default()
    };
    let (ds, rep) = read_ntu_dir(&data.join("ntu-rgbd-samples"), &opts).unwrap();
    assert_eq!(ds.samples.len(), 4);
    assert_eq!(rep.skipped.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Real data: NW-UCLA and MSR Action3D

#[test]
fn ucla_all_1484_files() {
    let (ds, rep) =
        read_ucla_dir(&data_dir().join("nw-ucla/all_sqe"), &DirOptions::default()).unwrap();
    assert_eq!(rep.files, 1484);
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!(ds.samples.len(), 1484);
    assert_eq!(ds.classes.len(), 10);
    let mut views = BTreeMap::new();
    let mut per_class = vec![0; 10];
    for s in &ds.samples {
        assert_eq!(s.skeleton.joints, 20);
        *views.entry(s.meta.view.unwrap()).or_insert(0) += 1;
        per_class[s.meta.label.unwrap()] += 1;
        assert!((1..=10).contains(&s.meta.subject.unwrap()));
    }
    assert_eq!(views, BTreeMap::from([(1, 516), (2, 504), (3, 464)]));
    assert!(per_class.iter().all(|&n| n > 100), "{per_class:?}");
    let frames: Vec<usize> = ds.samples.iter().map(|s| s.skeleton.frames).collect();
    // SOURCE.md says one file has a single frame; there are two (views 2 and 3 of one take).
    let one_frame: Vec<&str> = ds
        .samples
        .iter()
        .filter(|s| s.skeleton.frames == 1)
        .map(|s| s.meta.name.as_str())
        .collect();
    assert_eq!(one_frame, ["a02_s09_e04_v02", "a02_s09_e04_v03"]);
    assert_eq!(*frames.iter().max().unwrap(), 201);
    let first = read_ucla(&data_dir().join("nw-ucla/all_sqe/a01_s01_e00_v01.json")).unwrap();
    assert_eq!(first.skeleton.get(0, 0, 0, 0), -0.619699);
    assert_eq!(first.skeleton.get(0, 0, 1, 1), 0.381968);
    assert_eq!(first.meta.replication, Some(0));
}

#[test]
fn msr_all_567_files_with_zero_files_reported() {
    let dir = data_dir().join("msr-action3d/MSRAction3DSkeletonReal3D");
    let (ds, rep) = read_msr_dir(&dir, &DirOptions::default()).unwrap();
    assert_eq!(rep.files, 567);
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    let flagged: BTreeMap<String, (&Quality, bool)> = rep
        .flagged
        .iter()
        .map(|f| {
            let n = f.path.file_name().unwrap().to_string_lossy().into_owned();
            (n, (&f.quality, f.kept))
        })
        .collect();
    assert_eq!(
        flagged["a13_s09_e02_skeleton3D.txt"],
        (&Quality::AllZero { frames: 38 }, false)
    );
    assert_eq!(
        flagged["a07_s04_e01_skeleton3D.txt"],
        (
            &Quality::ZeroFrames {
                zero_frames: 36,
                frames: 45
            },
            true
        )
    );
    assert_eq!(flagged.len(), 20, "files with zero frames: {flagged:?}");
    assert_eq!(ds.samples.len(), 566, "the all-zero file is left out");
    let text = rep.to_string();
    assert!(
        text.starts_with("567 files: 566 samples read, 0 skipped, 20 flagged"),
        "{text}"
    );
    assert!(
        text.contains("a13_s09_e02_skeleton3D.txt: all 38 frames zero (left out)"),
        "{text}"
    );
    assert!(ds.samples.iter().all(|s| s.skeleton.joints == 20));
    // The single-file reader reports the same, without failing.
    let (s, q) = read_msr(&dir.join("a13_s09_e02_skeleton3D.txt"), true).unwrap();
    assert_eq!(q, Quality::AllZero { frames: 38 });
    assert_eq!(s.skeleton.channels, 4);
    assert_eq!(s.meta.label, Some(12));
    let (s, q) = read_msr(&dir.join("a01_s01_e01_skeleton3D.txt"), false).unwrap();
    assert_eq!(q, Quality::Ok);
    assert_eq!(s.skeleton.get(0, 0, 0, 0), -0.371736);
    assert_eq!((s.meta.subject, s.meta.replication), (Some(1), Some(1)));
}

/// Share of frames where `f` holds; joints by name of `layout`.
fn share(
    samples: &[crossglg_data::Sample],
    layout: &Layout,
    f: impl Fn(&dyn Fn(&str, usize) -> f32) -> bool,
) -> f64 {
    let (mut yes, mut all) = (0usize, 0usize);
    for s in samples {
        let sk = &s.skeleton;
        for t in 0..sk.frames {
            let frame = sk.frame(0, t);
            if frame.iter().all(|&x| x == 0.0) {
                continue;
            }
            let g =
                |name: &str, c: usize| frame[layout.joint_index(name).unwrap() * sk.channels + c];
            yes += usize::from(f(&g));
            all += 1;
        }
    }
    yes as f64 / all as f64
}

/// The joint orders of nwucla20 and msr20, checked on the real files (see
/// docs/data-formats.md): the head is the highest joint, feet are below knees, and for a person
/// facing the Kinect (x grows to the sensor's left) the left shoulder has the smaller x.
#[test]
fn kinect_v1_joint_orders_match_the_real_files() {
    let data = data_dir();
    let (ucla, _) = read_ucla_dir(&data.join("nw-ucla/all_sqe"), &DirOptions::default()).unwrap();
    let (msr, _) = read_msr_dir(
        &data.join("msr-action3d/MSRAction3DSkeletonReal3D"),
        &DirOptions::default(),
    )
    .unwrap();
    for (samples, name) in [(&ucla.samples, "nwucla20"), (&msr.samples, "msr20")] {
        let l = Layout::builtin(name).unwrap();
        // Raised arms can pass the head (arm waves, throws): compare with the other joints.
        let head_top = share(samples, &l, |g| {
            l.joints.iter().all(|j| {
                j == "head"
                    || ["elbow", "wrist", "hand"].iter().any(|a| j.ends_with(a))
                    || g("head", 1) >= g(j, 1)
            })
        });
        let feet_low = share(samples, &l, |g| {
            g("left_foot", 1) < g("left_knee", 1) && g("right_foot", 1) < g("right_knee", 1)
        });
        let left_is_left = share(samples, &l, |g| {
            g("left_shoulder", 0) < g("right_shoulder", 0)
        });
        assert!(head_top > 0.9, "{name}: head highest in {head_top}");
        assert!(feet_low > 0.95, "{name}: feet below knees in {feet_low}");
        assert!(
            left_is_left > 0.95,
            "{name}: left shoulder left in {left_is_left}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic NTU files

/// A valid NTU file: `bodies[t]` lists the body ids present in frame t.
fn ntu_text(bodies: &[&[u64]], joints: usize, eol: &str) -> String {
    let mut s = format!("{}{eol}", bodies.len());
    for (t, ids) in bodies.iter().enumerate() {
        s += &format!("{}{eol}", ids.len());
        for &id in ids.iter() {
            s += &format!("{id} 0 1 1 1 1 0 0.5 -0.25 2{eol}{joints}{eol}");
            for v in 0..joints {
                let x = id as f32 + t as f32 * 0.1 + v as f32 * 0.001;
                s += &format!(
                    "{x} {} 3.5 300 200 1000 500 0.1 0.2 0.3 0.4 2{eol}",
                    v as f32 * 0.01
                );
            }
        }
    }
    s
}

#[test]
fn ntu_zero_body_frames_id_tracking_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let frames: [&[u64]; 4] = [&[7], &[], &[7, 9], &[9]];
    let lf = ntu_text(&frames, 25, "\n");
    let crlf = ntu_text(&frames, 25, "\r\n");
    let a = parse_ntu_recording(lf.as_bytes(), Path::new("x.skeleton")).unwrap();
    let b = parse_ntu_recording(crlf.as_bytes(), Path::new("x.skeleton")).unwrap();
    assert_eq!(a, b, "CRLF and LF read the same");
    assert_eq!(a.frames[1].bodies.len(), 0);
    let sk = a.to_skeleton(2);
    assert_eq!(sk.shape(), [2, 4, 25, 3]);
    // Body 7 is person 0 in frames 0 and 2; body 9 person 1 in frames 2 and 3.
    assert_eq!(sk.get(0, 0, 0, 0), 7.0);
    assert!(sk.frame(0, 1).iter().all(|&x| x == 0.0));
    assert_eq!(sk.get(1, 3, 0, 0), 9.3);
    assert!(sk.frame(1, 0).iter().all(|&x| x == 0.0));
    // Cap 1 keeps a body seen in most frames (tie: first seen).
    assert_eq!(a.to_skeleton(1).get(0, 0, 0, 0), 7.0);
    // Trailing blank lines are fine.
    let p = write(
        dir.path(),
        "S001C001P001R001A001.skeleton",
        format!("{lf}\n\n").as_bytes(),
    );
    assert_eq!(read_ntu(&p, 2).unwrap().meta.label, Some(0));
}

#[test]
fn ntu_malformed_files_give_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = ntu_text(&[&[1], &[1]], 25, "\r\n");
    let lines: Vec<&str> = good.split("\r\n").collect();
    let joined = |l: &[&str]| l.join("\r\n");
    let replaced = |i: usize, with: &str| {
        let mut l = lines.clone();
        l[i] = with;
        joined(&l)
    };
    // Line 1 frame count, 2 body count, 3 body info, 4 joint count, 5.. joints.
    let cases: Vec<(&str, String, Option<usize>, &str)> = vec![
        ("empty", String::new(), Some(1), "frame count"),
        (
            "truncated",
            good[..good.len() / 2].to_string(),
            None,
            "truncated",
        ),
        ("wrong_joint_count", replaced(3, "24"), None, ""),
        (
            "joint_fields",
            replaced(6, "1 2 3"),
            Some(7),
            "expected 12 values, found 3",
        ),
        (
            "nan",
            replaced(5, "NaN 0 3 300 200 1000 500 0 0 0 0 2"),
            Some(6),
            "not finite",
        ),
        (
            "inf",
            replaced(5, "0 inf 3 300 200 1000 500 0 0 0 0 2"),
            Some(6),
            "not finite",
        ),
        (
            "absurd",
            replaced(5, "1e30 0 3 300 200 1000 500 0 0 0 0 2"),
            Some(6),
            "plausible",
        ),
        (
            "frames_1e12",
            replaced(0, "1000000000000"),
            Some(1),
            "limit",
        ),
        ("bodies_huge", replaced(1, "999999999"), Some(2), "limit"),
        (
            "body_info",
            replaced(2, "1 0 1 1 1 1 0 0.5 -0.25"),
            Some(3),
            "expected 10 values",
        ),
        (
            "body_id",
            replaced(2, "x 0 1 1 1 1 0 0.5 -0.25 2"),
            Some(3),
            "bodyID",
        ),
        (
            "not_number",
            replaced(5, "0.1 abc 3 300 200 1000 500 0 0 0 0 2"),
            Some(6),
            "field y",
        ),
        (
            "trailing",
            format!("{good}garbage\r\n"),
            None,
            "after the last",
        ),
        (
            "zero_frames",
            "0\r\n".to_string(),
            Some(1),
            "frame count is 0",
        ),
        (
            "joint_count_zero",
            replaced(3, "0"),
            Some(4),
            "joint count is 0",
        ),
    ];
    for (name, text, line, what) in cases {
        let file = format!("{name}.skeleton");
        let p = write(dir.path(), &file, text.as_bytes());
        let err = read_ntu(&p, 2).expect_err(name);
        if let Some(l) = line {
            assert!(
                matches!(err, ReadError::Line { line, .. } if line == l),
                "{name}: expected line {l}: {err}"
            );
        }
        let text = names_file(err, &file);
        assert!(text.contains(what), "{name}: {text}");
    }
    // Non-UTF-8 byte inside a number.
    let mut bytes = good.clone().into_bytes();
    let pos = bytes.iter().position(|&b| b == b'3').unwrap();
    bytes[pos] = 0xff;
    let p = write(dir.path(), "latin.skeleton", &bytes);
    names_file(read_ntu(&p, 2).unwrap_err(), "latin.skeleton");
    // Missing file.
    names_file(
        read_ntu(&dir.path().join("absent.skeleton"), 2).unwrap_err(),
        "absent.skeleton",
    );
    // Missing-list reader rejects junk after the header.
    let p = write(
        dir.path(),
        "missing.txt",
        b"header\nheader\n\nS001C002P005R002A008\nnot-a-name\n",
    );
    let t = names_file(read_missing_list(&p).unwrap_err(), "missing.txt");
    assert!(t.contains(":5:"), "{t}");
}

#[test]
fn ntu_folder_skips_bad_files_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "S001C001P001R001A001.skeleton",
        ntu_text(&[&[1]], 25, "\n").as_bytes(),
    );
    write(dir.path(), "S001C001P001R001A002.skeleton", b"2\n1\n");
    let (ds, rep) = read_ntu_dir(dir.path(), &DirOptions::default()).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(rep.skipped.len(), 1);
    assert!(rep.skipped[0].reason.contains("A002"), "{:?}", rep.skipped);
    let strict = DirOptions {
        strict: true,
        ..Default::default()
    };
    names_file(
        read_ntu_dir(dir.path(), &strict).unwrap_err(),
        "A002.skeleton",
    );
}

// ---------------------------------------------------------------------------------------------
// Synthetic NW-UCLA files

fn ucla_json(frames: usize, joints: usize, label: i64) -> String {
    let frame: Vec<String> = (0..joints).map(|v| format!("[{v}.5, 0.25, 3.0]")).collect();
    let frames: Vec<String> = (0..frames)
        .map(|_| format!("[{}]", frame.join(", ")))
        .collect();
    format!(
        "{{\"file_name\": \"a01_s02_e03_v01\", \"skeletons\": [{}], \"label\": {label}}}",
        frames.join(", ")
    )
}

#[test]
fn ucla_malformed_files_give_errors_naming_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = ucla_json(2, 20, 1);
    let s = parse_ucla(good.as_bytes(), Path::new("a.json")).unwrap();
    assert_eq!(s.skeleton.shape(), [1, 2, 20, 3]);
    assert_eq!(
        (
            s.meta.label,
            s.meta.subject,
            s.meta.replication,
            s.meta.view
        ),
        (Some(0), Some(2), Some(3), Some(1))
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "invalid"),
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "invalid",
        ),
        ("joints19", ucla_json(2, 19, 1).into_bytes(), "skeletons[0]"),
        ("label11", ucla_json(2, 20, 11).into_bytes(), "label"),
        (
            "label_mismatch",
            ucla_json(2, 20, 3).into_bytes(),
            "action code",
        ),
        ("no_frames", ucla_json(0, 20, 1).into_bytes(), "no frames"),
        (
            "coords2",
            good.replacen("[0.5, 0.25, 3.0]", "[0.5, 0.25]", 1)
                .into_bytes(),
            "skeletons[0][0]",
        ),
        (
            "absurd",
            good.replacen("0.25", "1e30", 1).into_bytes(),
            "plausible",
        ),
        (
            "overflow",
            good.replacen("0.25", "1e400", 1).into_bytes(),
            "invalid",
        ),
        (
            "nan",
            good.replacen("0.25", "NaN", 1).into_bytes(),
            "invalid",
        ),
        (
            "string",
            good.replacen("0.25", "\"x\"", 1).into_bytes(),
            "invalid",
        ),
        (
            "latin1",
            good.replacen("a01_s02", "a01\u{e9}s02", 1)
                .into_bytes()
                .iter()
                .map(|&b| if b == 0xc3 { 0xe9 } else { b })
                .collect(),
            "invalid",
        ),
    ];
    for (name, bytes, what) in cases {
        let file = format!("{name}.json");
        let p = write(dir.path(), &file, &bytes);
        let text = names_file(read_ucla(&p).expect_err(name), &file);
        assert!(text.contains(what), "{name}: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic MSR files

fn msr_text(frames: usize) -> String {
    (0..frames * 20)
        .map(|i| {
            format!(
                "{:.6} {:.6} 2.5 1.000000\n",
                i as f32 * 0.01,
                -(i as f32) * 0.01
            )
        })
        .collect()
}

#[test]
fn msr_malformed_files_give_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = msr_text(2);
    let (s, q) = parse_msr(
        good.as_bytes(),
        Path::new("a01_s01_e01_skeleton3D.txt"),
        false,
    )
    .unwrap();
    assert_eq!((s.skeleton.shape(), q), ([1, 2, 20, 3], Quality::Ok));
    let lines: Vec<&str> = good.lines().collect();
    let with = |i: usize, row: &str| {
        let mut l = lines.clone();
        l[i] = row;
        l.join("\n")
    };
    let cases: Vec<(&str, String, Option<usize>, &str)> = vec![
        ("empty", String::new(), None, "empty"),
        ("truncated", lines[..30].join("\n"), Some(30), "truncated"),
        ("three_values", with(4, "1 2 3"), Some(5), "found 3"),
        ("five_values", with(4, "1 2 3 4 5"), Some(5), "found more"),
        ("nan", with(7, "nan 0 0 1"), Some(8), "not finite"),
        ("inf", with(7, "0 -inf 0 1"), Some(8), "not finite"),
        ("absurd", with(7, "0 0 1e30 1"), Some(8), "plausible"),
        ("word", with(7, "0 0 zero 1"), Some(8), "field z"),
        ("blank_inside", with(7, ""), Some(8), "blank line"),
    ];
    for (name, text, line, what) in cases {
        let file = format!("{name}.txt");
        let p = write(dir.path(), &file, text.as_bytes());
        let err = read_msr(&p, false).expect_err(name);
        if let Some(l) = line {
            assert!(
                matches!(err, ReadError::Line { line, .. } if line == l),
                "{name}: {err}"
            );
        }
        let text = names_file(err, &file);
        assert!(text.contains(what), "{name}: {text}");
    }
    let mut bytes = good.clone().into_bytes();
    bytes[2] = 0xfe;
    let p = write(dir.path(), "bytes.txt", &bytes);
    names_file(read_msr(&p, false).unwrap_err(), "bytes.txt");
    // Zero frames are a finding, not an error.
    let zeros = "0 0 0 0\n".repeat(40);
    let (_, q) = parse_msr(zeros.as_bytes(), Path::new("z.txt"), false).unwrap();
    assert_eq!(q, Quality::AllZero { frames: 2 });
}

// ---------------------------------------------------------------------------------------------
// .npy folders

#[test]
fn npy_fixture_folder_reads_with_manifest() {
    let (ds, rep) = read_npy_dir(&fixtures().join("npy"), "ntu25", &DirOptions::default()).unwrap();
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!(ds.classes, ["walk", "wave"]);
    assert_eq!(ds.samples.len(), 2);
    let walk = &ds.samples[0];
    assert_eq!(walk.skeleton.shape(), [1, 4, 25, 3]);
    assert_eq!(walk.meta.label, Some(0));
    assert_eq!((walk.meta.subject, walk.meta.view), (Some(1), Some(2)));
    assert_eq!(walk.meta.extra["note"], "first");
    for (i, &x) in walk.skeleton.data.iter().enumerate() {
        assert_eq!(x, i as f32 * 0.01f32, "walk[{i}]");
    }
    let wave = &ds.samples[1];
    assert_eq!(wave.skeleton.shape(), [2, 3, 25, 3]);
    assert_eq!(wave.meta.extra["note"], "two, persons");
    assert_eq!(wave.meta.view, None);
    for (i, &x) in wave.skeleton.data.iter().enumerate() {
        assert!(
            (x - (i as f32 * 0.01 + 1.0)).abs() < 1e-6,
            "wave[{i}] = {x}"
        );
    }
    // The layout is checked.
    let (ds, rep) =
        read_npy_dir(&fixtures().join("npy"), "coco17", &DirOptions::default()).unwrap();
    assert_eq!(ds.samples.len(), 0);
    assert!(
        rep.skipped[0].reason.contains("walk_1.npy") && rep.skipped[0].reason.contains("coco17")
    );
}

#[test]
fn npy_folder_writer_round_trips_a_synthetic_dataset() {
    use crossglg_data::read::npy::write_npy_folder;
    use crossglg_data::synth::{generate, SynthConfig};
    let ds = generate(&SynthConfig {
        classes: vec!["wave".into(), "kick".into(), "squat".into()],
        samples_per_class: 2,
        frames: [10, 14],
        ..SynthConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_npy_folder(&ds, dir.path()).unwrap();
    let (back, rep) = read_npy_dir(dir.path(), "ntu25", &DirOptions::default()).unwrap();
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!(back.classes, ds.classes);
    assert_eq!(back.samples.len(), ds.samples.len());
    for (a, b) in ds.samples.iter().zip(&back.samples) {
        assert_eq!(a.skeleton, b.skeleton, "{}", a.meta.name);
        assert_eq!(
            (a.meta.label, a.meta.subject, a.meta.view),
            (b.meta.label, b.meta.subject, b.meta.view)
        );
    }
    // A name that cannot be a file in the manifest is refused, naming the folder.
    let mut bad = ds.clone();
    bad.samples[0].meta.name = "a/b".into();
    let e = write_npy_folder(&bad, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("a/b") && e.contains(&*dir.path().to_string_lossy()),
        "{e}"
    );
}

#[test]
fn npy_numeric_labels_and_manifest_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_npy_f32(&d.join("a.npy"), &[2, 17, 2], &[0.5; 68]).unwrap();
    write(d, "manifest.csv", b"file,label\na.npy,3\n");
    let (ds, _) = read_npy_dir(d, "coco17", &DirOptions::default()).unwrap();
    assert_eq!(ds.classes.len(), 4);
    assert_eq!(ds.samples[0].meta.label, Some(3));
    assert_eq!(ds.samples[0].skeleton.shape(), [1, 2, 17, 2]);

    write(d, "classes.txt", b"sit\nstand\n");
    write(d, "manifest.csv", b"file,label\na.npy,stand\n");
    let (ds, _) = read_npy_dir(d, "coco17", &DirOptions::default()).unwrap();
    assert_eq!((ds.classes.len(), ds.samples[0].meta.label), (2, Some(1)));
    std::fs::remove_file(d.join("classes.txt")).unwrap();

    let cases: [(&str, &str); 6] = [
        ("name,label\na.npy,x\n", "header"),
        ("file,label\n", "no files"),
        ("file,label\na.npy,walk\nb.npy,2\n", "mix"),
        ("file,label,subject\na.npy,walk\n", "fields"),
        ("file,label,subject\na.npy,walk,one\n", "subject"),
        ("file,label\n\"a.npy,walk\n", "quote"),
    ];
    for (text, what) in cases {
        write(d, "manifest.csv", text.as_bytes());
        let err = read_npy_dir(d, "coco17", &DirOptions::default()).unwrap_err();
        let t = names_file(err, "manifest.csv");
        assert!(t.contains(what), "{t}");
    }
    // A listed file that is missing is skipped and named.
    write(d, "manifest.csv", b"file,label\na.npy,0\nabsent.npy,0\n");
    let (ds, rep) = read_npy_dir(d, "coco17", &DirOptions::default()).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert!(rep.skipped[0].reason.contains("absent.npy"));
    names_file(
        read_npy_dir(d, "nope", &DirOptions::default()).unwrap_err(),
        &d.file_name().unwrap().to_string_lossy(),
    );
}

fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_malformed_files_give_errors_naming_file() {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let ok = npy_bytes("<f4", "(1, 2, 3)", &f32s(&[1.0; 6]));
    assert_eq!(
        parse_npy(&ok, Path::new("ok.npy")).unwrap().shape,
        [1, 2, 3]
    );
    let be = npy_bytes(
        ">f8",
        "(2,)",
        &[&2.0f64.to_be_bytes()[..], &(-1.5f64).to_be_bytes()].concat(),
    );
    assert_eq!(
        parse_npy(&be, Path::new("be.npy")).unwrap().data,
        [2.0, -1.5]
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "magic"),
        ("magic", b"NUMPY-ish file with text".to_vec(), "magic"),
        ("truncated_header", ok[..20].to_vec(), "header"),
        ("truncated_data", ok[..ok.len() - 3].to_vec(), "truncated"),
        (
            "complex",
            npy_bytes("<c8", "(1, 2, 3)", &[0; 48]),
            "not supported",
        ),
        (
            "big_endian_int",
            npy_bytes(">i4", "(1, 2, 3)", &[0; 24]),
            "not supported",
        ),
        (
            "nan",
            npy_bytes("<f4", "(2,)", &f32s(&[1.0, f32::NAN])),
            "data[1]",
        ),
        (
            "inf",
            npy_bytes("<f4", "(2,)", &f32s(&[f32::INFINITY, 1.0])),
            "not finite",
        ),
        (
            "absurd",
            npy_bytes("<f4", "(2,)", &f32s(&[1.0, 1e30])),
            "plausible",
        ),
        (
            "huge_shape",
            npy_bytes("<f4", "(1000000000000, 25, 3)", &[]),
            "needs",
        ),
        (
            "overflow_shape",
            npy_bytes("<f4", "(100000000000000, 100000000000, 3)", &[]),
            "too large",
        ),
        ("bad_header", npy_bytes("<f4", "[1, 2]", &[]), "header"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, what) in cases {
        let file = format!("{name}.npy");
        let p = write(dir.path(), &file, &bytes);
        let r = crossglg_data::read::npy::read_npy(&p);
        let text = names_file(r.expect_err(name), &file);
        assert!(text.contains(what), "{name}: {text}");
    }
    // little-endian integers read as numbers (label arrays in .npz archives), sign-extended
    let mut ints = Vec::new();
    for v in [-2i16, 7, 300] {
        ints.extend_from_slice(&v.to_le_bytes());
    }
    let p = write(dir.path(), "ints.npy", &npy_bytes("<i2", "(3,)", &ints));
    let a = crossglg_data::read::npy::read_npy_array(&p).unwrap();
    assert_eq!(a.data, [-2.0, 7.0, 300.0]);
    let mut latin = npy_bytes("<f4", "(1,)", &[0; 4]);
    latin[12] = 0xff;
    let p = write(dir.path(), "latin.npy", &latin);
    let t = names_file(
        crossglg_data::read::npy::read_npy(&p).unwrap_err(),
        "latin.npy",
    );
    assert!(t.contains("not text"), "{t}");
    let fortran = npy_bytes("<f4", "(1,)", &[0; 4]);
    let fortran = String::from_utf8_lossy(&fortran).replace("False", "True ");
    let p = write(dir.path(), "fortran.npy", fortran.as_bytes());
    let t = names_file(
        crossglg_data::read::npy::read_npy(&p).unwrap_err(),
        "fortran.npy",
    );
    assert!(t.contains("fortran"), "{t}");
    // 2-D arrays are not skeletons.
    let p = write(
        dir.path(),
        "flat.npy",
        &npy_bytes("<f4", "(2, 3)", &[0; 24]),
    );
    let t = names_file(
        crossglg_data::read::npy::read_npy(&p).unwrap_err(),
        "flat.npy",
    );
    assert!(t.contains("[T, V, C]"), "{t}");
}

// ---------------------------------------------------------------------------------------------
// pyskl pickles

#[test]
fn pyskl_fixtures_read_for_protocols_2_4_5() {
    for proto in [2, 4, 5] {
        let p = fixtures().join(format!("pyskl/ntu_p{proto}.pkl"));
        let d = read_pyskl(&p, "ntu25", None, &DirOptions::default()).unwrap();
        assert!(
            d.report.skipped.is_empty(),
            "p{proto}: {:?}",
            d.report.skipped
        );
        assert_eq!(d.split["xsub_train"], ["S001C001P001R001A001"], "p{proto}");
        assert_eq!(d.split["xsub_val"], ["S002C002P003R002A013"]);
        let s = &d.dataset.samples;
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].skeleton.shape(), [1, 4, 25, 3]);
        assert_eq!(s[0].meta.label, Some(0));
        assert_eq!(s[0].meta.subject, Some(1));
        for (i, &x) in s[0].skeleton.data.iter().enumerate() {
            assert_eq!(x, i as f32 * 0.01f32, "p{proto} [{i}]");
        }
        assert_eq!(s[1].skeleton.shape(), [2, 3, 25, 3]);
        assert_eq!((s[1].meta.label, s[1].meta.view), (Some(12), Some(2)));
        for (i, &x) in s[1].skeleton.data.iter().enumerate() {
            assert!(
                (x - (i as f32 * 0.01 + 1.0)).abs() < 1e-6,
                "p{proto} [{i}] = {x}"
            );
        }
        assert_eq!(d.dataset.classes.len(), 13);
        // NTU pickles get the official names their labels index (what descriptions match)
        assert_eq!(d.dataset.classes[12], "tear up paper", "p{proto}");
        assert_eq!(d.dataset.classes[0], "drink water", "p{proto}");
    }
}

#[test]
fn pyskl_2d_keypoints_get_the_score_as_third_channel() {
    let p = fixtures().join("pyskl/coco_2d.pkl");
    let names: Vec<String> = (0..5).map(|i| format!("class {i}")).collect();
    let d = read_pyskl(&p, "coco17", Some(names), &DirOptions::default()).unwrap();
    let s = &d.dataset.samples[0];
    assert_eq!(s.skeleton.shape(), [1, 3, 17, 3]);
    assert_eq!(s.meta.name, "clip_a");
    assert_eq!(s.meta.label, Some(3));
    // keypoint[0, 1, 2] = (i, i+1) * 0.01 with i = (1*17 + 2) * 2; score = j * 0.01 + 0.5.
    let i = ((17 + 2) * 2) as f32;
    let j = (17 + 2) as f32;
    assert_eq!(s.skeleton.get(0, 1, 2, 0), i * 0.01f32);
    assert_eq!(s.skeleton.get(0, 1, 2, 1), (i + 1.0) * 0.01f32);
    assert!((s.skeleton.get(0, 1, 2, 2) - (j * 0.01 + 0.5)).abs() < 1e-6);
    assert!(d.split["val"].is_empty());
    // Too few class names is an error naming the file.
    let t = names_file(
        read_pyskl(&p, "coco17", Some(vec!["a".into()]), &DirOptions::default()).unwrap_err(),
        "coco_2d.pkl",
    );
    assert!(t.contains("class names"), "{t}");
    // Wrong layout: the annotation is skipped and named.
    let d = read_pyskl(&p, "ntu25", None, &DirOptions::default()).unwrap();
    assert!(
        d.report.skipped[0]
            .reason
            .contains("annotations[0].keypoint"),
        "{:?}",
        d.report.skipped
    );
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in fixture");
    [&hay[..i], to, &hay[i + from.len()..]].concat()
}

/// A hand-written protocol-2 pickle: `{"annotations": [ann]}` with the given keypoint bytes.
fn tiny_pickle(shape: &[u8], dtype: &str, data: &[u8], label: u8) -> Vec<u8> {
    let mut p = b"\x80\x02}q\x00(X\x0b\x00\x00\x00annotationsq\x01]q\x02}q\x03(X\x09\x00\x00\x00frame_dirq\x04X\x03\x00\x00\x00abcX\x05\x00\x00\x00labelK".to_vec();
    p.push(label);
    p.extend_from_slice(b"X\x08\x00\x00\x00keypointcnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R(K\x01(");
    for &d in shape {
        p.push(b'K');
        p.push(d);
    }
    p.extend_from_slice(b"tcnumpy\ndtype\nX");
    p.extend_from_slice(&(dtype.len() as u32).to_le_bytes());
    p.extend_from_slice(dtype.as_bytes());
    p.extend_from_slice(
        b"\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89B",
    );
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(data);
    p.extend_from_slice(b"tbuau.");
    p
}

/// A label far beyond any dataset's class count (10^9, 2^63 - 1) is a clean error naming the
/// field, not a billion class names or a capacity-overflow panic.
#[test]
fn pyskl_huge_labels_are_refused() {
    let layout = Layout::builtin("coco17").unwrap();
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let good = tiny_pickle(&[1, 1, 17, 2], "f4", &f32s(&[0.25; 34]), 2);
    let d = parse_pyskl(
        &good,
        Path::new("l.pkl"),
        &layout,
        None,
        &DirOptions::default(),
    )
    .unwrap();
    assert_eq!(d.dataset.classes, ["0", "1", "2"]);
    for (bytes, name) in [
        (&b"J\x00\xca\x9a\x3b"[..], "1000000000"),
        (
            &b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f"[..],
            "9223372036854775807",
        ),
    ] {
        let mut label = b"label".to_vec();
        label.extend_from_slice(bytes);
        let p = replace_bytes(&good, b"labelK\x02", &label);
        let e = parse_pyskl(
            &p,
            Path::new("l.pkl"),
            &layout,
            None,
            &DirOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("l.pkl") && e.contains(".label") && e.contains(name),
            "{name}: {e}"
        );
    }
}

#[test]
fn pyskl_malformed_pickles_give_errors_naming_file() {
    let layout = Layout::builtin("coco17").unwrap();
    let opts = DirOptions {
        strict: true,
        ..Default::default()
    };
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let good = tiny_pickle(&[1, 1, 17, 2], "f4", &f32s(&[0.25; 34]), 2);
    let d = parse_pyskl(&good, Path::new("good.pkl"), &layout, None, &opts).unwrap();
    assert_eq!(d.dataset.samples[0].skeleton.shape(), [1, 1, 17, 2]);
    assert_eq!(d.dataset.samples[0].skeleton.data, vec![0.25; 34]);

    let mut deep = b"\x80\x02)".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 100_000));
    deep.push(b'.');
    let mut with_nan = f32s(&[0.25; 34]);
    with_nan[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "pickle byte 0"),
        ("truncated", good[..good.len() / 2].to_vec(), "pickle byte"),
        (
            "garbage",
            b"hello world, not a pickle".to_vec(),
            "pickle byte 0",
        ),
        ("not_dict", b"\x80\x02]q\x00.".to_vec(), "expected a dict"),
        ("no_annotations", b"\x80\x02}q\x00.".to_vec(), "annotations"),
        ("deep", deep, "nesting"),
        (
            "short_data",
            tiny_pickle(&[1, 1, 17, 2], "f4", &f32s(&[0.25; 30]), 2),
            "bytes",
        ),
        (
            "three_dims",
            tiny_pickle(&[1, 17, 2], "f4", &f32s(&[0.25; 34]), 2),
            "[M, T, V, C]",
        ),
        (
            "joints",
            tiny_pickle(&[1, 1, 25, 2], "f4", &f32s(&[0.25; 50]), 2),
            "layout",
        ),
        (
            "nan",
            tiny_pickle(&[1, 1, 17, 2], "f4", &with_nan, 2),
            "not finite",
        ),
        (
            "absurd",
            tiny_pickle(&[1, 1, 17, 2], "f4", &f32s(&[1e30; 34]), 2),
            "plausible",
        ),
        (
            "int_dtype",
            tiny_pickle(&[1, 1, 17, 2], "i4", &[0; 136], 2),
            "expected float",
        ),
        (
            "frames_huge",
            tiny_pickle(&[1, 255, 17, 2], "f4", &f32s(&[0.25; 34]), 2),
            "bytes",
        ),
    ];
    // A frame count of 10^12 (LONG1 in the shape tuple) and a non-UTF-8 string.
    let base = tiny_pickle(&[1, 255, 17, 2], "f4", &f32s(&[0.25; 34]), 2);
    let huge = replace_bytes(
        &base,
        b"K\x01K\xffK\x11",
        b"K\x01\x8a\x06\x00\x10\xa5\xd4\xe8\x00K\x11",
    );
    let latin = replace_bytes(&good, b"\x03\x00\x00\x00abc", b"\x03\x00\x00\x00a\xffc");
    cases.push(("frames_1e12", huge, "outside 1..=1000000"));
    cases.push(("latin", latin, "UTF-8"));
    for (name, bytes, what) in cases {
        let file = format!("{name}.pkl");
        let err = parse_pyskl(&bytes, Path::new(&file), &layout, None, &opts).expect_err(name);
        let text = names_file(err, &file);
        assert!(text.contains(what), "{name}: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_reports_real_folders_and_files() {
    let data = data_dir();
    let r = inspect_path(&data.join("ntu-rgbd-samples"), &InspectOptions::default()).unwrap();
    assert_eq!((r.format.as_str(), r.samples), ("ntu", 5));
    assert_eq!((r.frames.min, r.frames.max, r.frames.total), (70, 124, 447));
    assert_eq!((r.bodies.min, r.bodies.max), (1, 2));
    assert_eq!(r.joints, [25]);
    assert_eq!(r.channel_stats.len(), 3);
    assert!(
        r.channel_stats[2].min > 1.0,
        "depth is positive: {:?}",
        r.channel_stats
    );
    assert_eq!(r.nan_count + r.inf_count, 0);
    assert_eq!(r.class_counts.len(), 5);
    let text = r.to_string();
    assert!(
        text.contains("handshaking") && text.contains("samples:  5"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["samples"], 5);

    let r = inspect_path(
        &data.join("msr-action3d/MSRAction3DSkeletonReal3D"),
        &InspectOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (r.format.as_str(), r.samples, r.flagged.len()),
        ("msr", 566, 20)
    );
    assert!(r
        .to_string()
        .contains("a13_s09_e02_skeleton3D.txt: all 38 frames zero (left out)"));

    let r = inspect_path(
        &data.join("nw-ucla/all_sqe/a01_s01_e00_v01.json"),
        &InspectOptions::default(),
    )
    .unwrap();
    assert_eq!((r.samples, r.layout.as_str()), (1, "nwucla20"));

    let r = inspect_path(
        &fixtures().join("pyskl/coco_2d.pkl"),
        &InspectOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (r.layout.as_str(), r.channels.as_slice()),
        ("coco17", &[3][..])
    );
    let opts = InspectOptions {
        layout: Some("ntu25".into()),
        ..Default::default()
    };
    let r = inspect_path(&fixtures().join("npy"), &opts).unwrap();
    assert_eq!(r.samples, 2);
    assert_eq!(r.class_counts.len(), 2);
    names_file(
        inspect_path(&fixtures().join("npy"), &InspectOptions::default()).unwrap_err(),
        "npy",
    );
    // A packed file (crate::pack) inspects like its source.
    let (ds, _) = read_npy_dir(&fixtures().join("npy"), "ntu25", &DirOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("npy.safetensors");
    crossglg_data::pack::Packed::write(&ds, &packed).unwrap();
    let p = inspect_path(&packed, &InspectOptions::default()).unwrap();
    assert_eq!((p.format.as_str(), p.samples), ("packed", 2));
    assert_eq!((p.frames.total, p.class_counts.len()), (r.frames.total, 2));
    let junk = write(dir.path(), "junk.safetensors", b"not safetensors");
    names_file(
        inspect_path(&junk, &InspectOptions::default()).unwrap_err(),
        "junk.safetensors",
    );
    names_file(
        inspect_path(Path::new("nowhere/x.bin"), &InspectOptions::default()).unwrap_err(),
        "x.bin",
    );
}

#[test]
fn read_path_dispatches_on_files_and_folders() {
    use crossglg_data::read::{read_path, Format};
    let data = data_dir();
    let o = DirOptions::default();
    let (ds, rep, f) =
        read_path(&data.join("nw-ucla/all_sqe/a01_s01_e00_v01.json"), None, &o).unwrap();
    assert_eq!(
        (f, ds.samples.len(), rep.read, ds.layout.as_str()),
        (Format::NwUcla, 1, 1, "nwucla20")
    );
    let (ds, rep, f) = read_path(&data.join("ntu-rgbd-samples"), None, &o).unwrap();
    assert_eq!((f, ds.samples.len(), rep.files), (Format::Ntu, 5, 5));
    let (_, rep, f) = read_path(
        &data.join("msr-action3d/MSRAction3DSkeletonReal3D/a13_s09_e02_skeleton3D.txt"),
        None,
        &o,
    )
    .unwrap();
    assert_eq!((f, rep.flagged.len()), (Format::Msr, 1));
    let (ds, _, f) = read_path(&fixtures().join("npy/walk_1.npy"), None, &o).unwrap();
    assert_eq!(
        (f, ds.layout.as_str(), ds.samples[0].meta.name.as_str()),
        (Format::Npy, "ntu25", "walk_1")
    );
    let (ds, _, f) = read_path(&fixtures().join("npy"), Some("ntu25"), &o).unwrap();
    assert_eq!((f, ds.samples.len()), (Format::Npy, 2));
    let (ds, _, f) = read_path(&fixtures().join("pyskl/ntu_p4.pkl"), None, &o).unwrap();
    assert_eq!(
        (f, ds.layout.as_str(), ds.samples.len()),
        (Format::Pyskl, "ntu25", 2)
    );
    let empty = tempfile::tempdir().unwrap();
    let t = names_file(
        read_path(empty.path(), None, &o).unwrap_err(),
        &empty.path().file_name().unwrap().to_string_lossy(),
    );
    assert!(t.contains("no .skeleton"), "{t}");
}

#[test]
fn inspect_counts_non_finite_values_in_memory() {
    let mut sk = Skeleton::zeros(1, 2, 3, 3);
    sk.data[0] = f32::NAN;
    sk.data[1] = f32::INFINITY;
    sk.data[9] = 2.0;
    let ds = crossglg_data::Dataset {
        name: "t".into(),
        layout: "x".into(),
        classes: vec!["a".into()],
        samples: vec![crossglg_data::Sample {
            meta: Default::default(),
            skeleton: sk,
        }],
    };
    let r = inspect_dataset(&ds, "mem", "memory");
    assert_eq!((r.nan_count, r.inf_count, r.zero_frames), (1, 1, 0));
    assert_eq!(r.channel_stats[0].max, 2.0);
    assert_eq!(r.class_counts["unlabelled"], 1);
}

// ---------------------------------------------------------------------------------------------
// Property tests: no parser panics, whatever the bytes.

mod props {
    use super::*;
    use proptest::prelude::*;

    fn all_parsers(bytes: &[u8]) {
        let p = Path::new("fuzz.bin");
        let _ = parse_ntu_recording(bytes, p).map(|r| r.to_skeleton(2));
        let _ = parse_ucla(bytes, p);
        let _ = parse_msr(bytes, p, true);
        let _ = parse_npy(bytes, p);
        let _ = unpickle(bytes);
        let layout = Layout::builtin("ntu25").unwrap();
        let _ = parse_pyskl(bytes, p, &layout, None, &DirOptions::default());
    }

    fn seeds() -> Vec<Vec<u8>> {
        let f = fixtures();
        vec![
            ntu_text(&[&[1], &[], &[1, 2]], 25, "\r\n").into_bytes(),
            ucla_json(2, 20, 1).into_bytes(),
            msr_text(2).into_bytes(),
            std::fs::read(f.join("npy/walk_1.npy")).unwrap(),
            std::fs::read(f.join("pyskl/ntu_p2.pkl")).unwrap(),
            std::fs::read(f.join("pyskl/ntu_p5.pkl")).unwrap(),
            std::fs::read(f.join("pyskl/coco_2d.pkl")).unwrap(),
        ]
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Flip(usize, u8),
        Truncate(usize),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            any::<usize>().prop_map(Edit::Truncate),
            (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(i, v)| Edit::Insert(i, v)),
            (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            all_parsers(&bytes);
        }

        #[test]
        fn mutated_valid_files_never_panic(
            which in 0usize..7,
            edits in proptest::collection::vec(edit(), 1..6),
        ) {
            let mut b = seeds().swap_remove(which);
            for e in edits {
                let n = b.len().max(1);
                match e {
                    Edit::Flip(i, x) => { let i = i % n; if i < b.len() { b[i] = x; } }
                    Edit::Truncate(i) => b.truncate(i % n),
                    Edit::Insert(i, v) => { let i = i % (b.len() + 1); b.splice(i..i, v); }
                    Edit::Delete(i, k) => { let i = i % n; let e = (i + k).min(b.len()); if i < e { b.drain(i..e); } }
                }
            }
            all_parsers(&b);
        }
    }
}

/// Small files that used to ask for huge allocations: a body of 1000 joints (NTU bodies have
/// 25), and a frame count whose array alone would pass the per-sample budget; both refused
/// with the line named, before the array exists.
#[test]
fn ntu_small_files_cannot_ask_for_huge_arrays() {
    let joints_1000 = "1\n1\n72057594037965350 0 1 1 0 0 0 0.1 0.2 2\n1000\n";
    let e = parse_ntu_recording(joints_1000.as_bytes(), Path::new("j.skeleton"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("j.skeleton:4") && e.contains("joint count is 1000"),
        "{e}"
    );
    let frames = "999999\n0\n0\n";
    let e = parse_ntu_recording(frames.as_bytes(), Path::new("f.skeleton"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("f.skeleton:1") && e.contains("999999 frames"),
        "{e}"
    );
}

/// The dataset's value budget stops reading once passed, naming the source (a pickle that
/// references one memoised annotation thousands of times used to become gigabytes).
#[test]
fn dataset_value_budget_stops_reading() {
    let layout = Layout::builtin("coco17").unwrap();
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let good = tiny_pickle(&[1, 1, 17, 2], "f4", &f32s(&[0.25; 34]), 2);
    let opts = DirOptions {
        max_total_values: 10,
        ..Default::default()
    };
    let e = parse_pyskl(&good, Path::new("m.pkl"), &layout, None, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m.pkl") && e.contains("more than 10 values"),
        "{e}"
    );
    let opts = DirOptions {
        max_total_values: 34,
        ..Default::default()
    };
    parse_pyskl(&good, Path::new("m.pkl"), &layout, None, &opts).unwrap();
}

/// A manifest is data from elsewhere: rows that leave the folder (`..`, absolute paths, a link
/// out) or name something that is not a regular file (a device) are refused, naming the
/// manifest line; `allow_outside_paths` lets the first kinds through.
#[test]
fn npy_manifest_paths_stay_in_their_folder() {
    use crossglg_data::read::npy::write_npy_folder;
    use crossglg_data::synth::{generate, SynthConfig};
    let ds = generate(&SynthConfig {
        classes: vec!["wave".into()],
        samples_per_class: 1,
        frames: [10, 10],
        ..SynthConfig::default()
    })
    .unwrap();
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("data");
    write_npy_folder(&ds, &dir).unwrap();
    let name = format!("{}.npy", ds.samples[0].meta.name);
    std::fs::copy(dir.join(&name), outer.path().join("outside.npy")).unwrap();
    std::os::unix::fs::symlink(outer.path().join("outside.npy"), dir.join("link.npy")).unwrap();
    for (entry, what) in [
        ("../outside.npy", "inside the folder"),
        ("/dev/zero", "inside the folder"),
        ("link.npy", "through a link"),
    ] {
        std::fs::write(
            dir.join("manifest.csv"),
            format!("file,label\n{entry},wave\n"),
        )
        .unwrap();
        let e = read_npy_dir(&dir, "ntu25", &DirOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("manifest.csv:2") && e.contains(what) && e.contains(entry),
            "{entry}: {e}"
        );
    }
    // allowed explicitly: the link and the parent path read; a device still does not
    let opts = DirOptions {
        allow_outside_paths: true,
        ..Default::default()
    };
    for entry in ["../outside.npy", "link.npy"] {
        std::fs::write(
            dir.join("manifest.csv"),
            format!("file,label\n{entry},wave\n"),
        )
        .unwrap();
        let (d, _) = read_npy_dir(&dir, "ntu25", &opts).unwrap();
        assert_eq!(d.samples.len(), 1, "{entry}");
    }
    std::fs::write(dir.join("manifest.csv"), "file,label\n/dev/zero,wave\n").unwrap();
    let strict = DirOptions {
        strict: true,
        ..opts
    };
    let e = read_npy_dir(&dir, "ntu25", &strict)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
}

/// OpenPose output: files of one name form a sequence in frame-number order, people become
/// persons (in OpenPose's order, up to max_bodies), channels are x, y, confidence.
#[test]
fn openpose_folders_read_as_sequences() {
    use crossglg_data::read::openpose::{read_openpose_dir, split_name};
    assert_eq!(
        split_name("walk_000000000012_keypoints.json"),
        Some(("walk".into(), 12))
    );
    assert_eq!(
        split_name("a_b_000000000001_keypoints.json"),
        Some(("a_b".into(), 1))
    );
    assert_eq!(split_name("walk_keypoints.json"), None);
    let dir = tempfile::tempdir().unwrap();
    let person = |base: f64| {
        let kp: Vec<f64> = (0..25)
            .flat_map(|v| [base + v as f64, 2.0 * v as f64, 0.9])
            .collect();
        serde_json::json!({ "person_id": [-1], "pose_keypoints_2d": kp })
    };
    let frame = |people: Vec<serde_json::Value>| {
        serde_json::json!({ "version": 1.3, "people": people }).to_string()
    };
    // written out of order: the frame number decides
    for (file, people) in [
        ("walk_000000000002_keypoints.json", vec![person(30.0)]),
        ("walk_000000000000_keypoints.json", vec![person(10.0)]),
        (
            "walk_000000000001_keypoints.json",
            vec![person(20.0), person(100.0)],
        ),
        ("jump_000000000000_keypoints.json", vec![]),
        ("jump_000000000001_keypoints.json", vec![person(5.0)]),
    ] {
        std::fs::write(dir.path().join(file), frame(people)).unwrap();
    }
    let layout = Layout::builtin("body25").unwrap();
    let (ds, rep) = read_openpose_dir(dir.path(), &layout, &DirOptions::default()).unwrap();
    assert_eq!(rep.files, 5);
    let names: Vec<&str> = ds.samples.iter().map(|s| s.meta.name.as_str()).collect();
    assert_eq!(names, ["jump", "walk"]);
    let walk = &ds.samples[1].skeleton;
    assert_eq!(walk.shape(), [2, 3, 25, 3]);
    assert_eq!(
        (
            walk.get(0, 0, 0, 0),
            walk.get(0, 1, 3, 0),
            walk.get(0, 2, 0, 0)
        ),
        (10.0, 23.0, 30.0)
    );
    assert_eq!((walk.get(0, 0, 4, 1), walk.get(0, 0, 4, 2)), (8.0, 0.9));
    assert_eq!((walk.get(1, 1, 0, 0), walk.get(1, 0, 0, 0)), (100.0, 0.0));
    let jump = &ds.samples[0].skeleton;
    assert_eq!(
        (jump.shape(), jump.get(0, 0, 0, 0), jump.get(0, 1, 0, 0)),
        ([1, 2, 25, 3], 0.0, 5.0)
    );
    // COCO-18 output against the BODY_25 layout: an error naming the file and the field
    std::fs::write(
        dir.path().join("coco_000000000000_keypoints.json"),
        frame(vec![
            serde_json::json!({ "pose_keypoints_2d": vec![0.5; 54] }),
        ]),
    )
    .unwrap();
    let strict = DirOptions {
        strict: true,
        ..Default::default()
    };
    let e = read_openpose_dir(dir.path(), &layout, &strict)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("coco_000000000000_keypoints.json") && e.contains("54 values"),
        "{e}"
    );
}

/// OpenPose's COCO model (18 keypoints) is recognised by its keypoint count and read with the
/// `openpose18` layout, which maps to NTU-25.
#[test]
fn openpose_coco18_folders_pick_their_layout() {
    use crossglg_data::mapping::{map_skeleton, Mapping};
    use crossglg_data::read::{read_path, Format};
    let dir = tempfile::tempdir().unwrap();
    let kp: Vec<f64> = (0..18).flat_map(|v| [v as f64, 1.0, 0.8]).collect();
    for i in 0..3 {
        let f = serde_json::json!({ "people": [{ "pose_keypoints_2d": kp }] });
        std::fs::write(
            dir.path().join(format!("wave_{i:012}_keypoints.json")),
            f.to_string(),
        )
        .unwrap();
    }
    let (ds, _, format) = read_path(dir.path(), None, &DirOptions::default()).unwrap();
    assert!(matches!(format, Format::OpenPose));
    assert_eq!(ds.layout, "openpose18");
    let sk = &ds.samples[0].skeleton;
    assert_eq!(sk.shape(), [1, 3, 18, 3]);
    // NTU's left hand repeats the left wrist (joint 7), its spine shoulder is the neck (1)
    let ntu = map_skeleton(sk, &Mapping::load("openpose18_to_ntu25").unwrap()).unwrap();
    assert_eq!(ntu.shape(), [1, 3, 25, 3]);
    let ntu25 = Layout::builtin("ntu25").unwrap();
    let at = |name: &str| ntu25.joints.iter().position(|j| j == name).unwrap();
    assert_eq!(ntu.get(0, 0, at("left_hand"), 0), 7.0);
    assert_eq!(ntu.get(0, 0, at("spine_shoulder"), 0), 1.0);
    // a keypoint count of neither model is an error that names the file and asks for a layout
    std::fs::write(
        dir.path().join("odd_000000000000_keypoints.json"),
        serde_json::json!({ "people": [{ "pose_keypoints_2d": vec![0.5; 51] }] }).to_string(),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("wave_000000000000_keypoints.json")).unwrap();
    std::fs::remove_file(dir.path().join("wave_000000000001_keypoints.json")).unwrap();
    std::fs::remove_file(dir.path().join("wave_000000000002_keypoints.json")).unwrap();
    let e = read_path(dir.path(), None, &DirOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("odd_000000000000") && e.contains("--layout"),
        "{e}"
    );
}

/// A Kinetics-skeleton video as ST-GCN released them.
fn kinetics_video(label: Option<(usize, &str)>, frames: &[(i64, Vec<(f64, f64)>)]) -> String {
    let data: Vec<serde_json::Value> = frames
        .iter()
        .map(|(i, people)| {
            let skeleton: Vec<serde_json::Value> = people
                .iter()
                .map(|&(x, s)| {
                    let pose: Vec<f64> = (0..18).flat_map(|v| [x + v as f64, 0.5]).collect();
                    serde_json::json!({ "pose": pose, "score": vec![s; 18] })
                })
                .collect();
            serde_json::json!({ "frame_index": i, "skeleton": skeleton })
        })
        .collect();
    let mut v = serde_json::json!({ "data": data });
    if let Some((i, name)) = label {
        v["label"] = name.into();
        v["label_index"] = i.into();
    }
    v.to_string()
}

/// Kinetics-skeleton: frames placed by frame_index, people ranked by score (the best two kept),
/// channels x, y, score, classes from the files, told apart from NW-UCLA's JSON.
#[test]
fn kinetics_skeleton_folders_read_with_labels() {
    use crossglg_data::read::{read_path, Format};
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
    // frame 2 missing; frame 3 lists three people, the best-scored two kept in score order
    w(
        "abc.json",
        kinetics_video(
            Some((2, "abseiling")),
            &[
                (1, vec![(10.0, 0.5)]),
                (3, vec![(1.0, 0.1), (2.0, 0.9), (3.0, 0.4)]),
            ],
        ),
    );
    w(
        "def.json",
        kinetics_video(Some((0, "air drumming")), &[(1, vec![(5.0, 0.7)])]),
    );
    let (ds, rep, format) = read_path(dir.path(), None, &DirOptions::default()).unwrap();
    assert!(matches!(format, Format::Kinetics));
    assert_eq!((rep.files, ds.layout.as_str()), (2, "openpose18"));
    assert_eq!(ds.classes, ["air drumming", "label_1", "abseiling"]);
    let abc = &ds.samples[0];
    assert_eq!((abc.meta.name.as_str(), abc.meta.label), ("abc", Some(2)));
    let sk = &abc.skeleton;
    assert_eq!(sk.shape(), [2, 3, 18, 3]);
    assert_eq!(sk.get(0, 0, 0, 0), 10.0);
    assert_eq!((sk.get(0, 1, 0, 0), sk.get(0, 1, 0, 2)), (0.0, 0.0));
    assert_eq!((sk.get(0, 2, 3, 0), sk.get(0, 2, 3, 2)), (5.0, 0.9));
    assert_eq!(sk.get(1, 2, 0, 0), 3.0);
    // one file alone reads too, with its class at its index
    let (one, _, f) =
        read_path(&dir.path().join("abc.json"), None, &DirOptions::default()).unwrap();
    assert!(matches!(f, Format::Kinetics));
    assert_eq!(one.classes[2], "abseiling");
    // broken files: named, with the field
    w(
        "bad.json",
        r#"{"data": [{"frame_index": 1, "skeleton": [{"pose": [1, 2], "score": [1]}]}]}"#.into(),
    );
    w(
        "far.json",
        r#"{"data": [{"frame_index": 0, "skeleton": []}, {"frame_index": 9000000000, "skeleton": []}]}"#
            .into(),
    );
    w(
        "huge.json",
        r#"{"data": [], "label_index": 99999999999}"#.into(),
    );
    let (ds, rep, _) = read_path(dir.path(), None, &DirOptions::default()).unwrap();
    assert_eq!(ds.samples.len(), 2);
    let skipped: Vec<String> = rep.skipped.iter().map(|s| format!("{s:?}")).collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    let strict = DirOptions {
        strict: true,
        ..Default::default()
    };
    let e = read_path(dir.path(), None, &strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.json") && e.contains("2 pose values"), "{e}");
}

/// The Kinetics one-shot splits: 40 novel classes each, disjoint, auxiliary never novel.
#[test]
fn kinetics_splits_are_disjoint() {
    use crossglg_data::protocol::Split;
    let test = Split::builtin("kinetics400").unwrap();
    let val = Split::builtin("kinetics400-val").unwrap();
    assert_eq!(
        (test.novel_classes.len(), val.novel_classes.len()),
        (40, 40)
    );
    assert_eq!(test.auxiliary_classes.len(), 360);
    assert_eq!(val.auxiliary_classes.len(), 320);
    for c in &val.auxiliary_classes {
        assert!(!test.novel_classes.contains(c) && !val.novel_classes.contains(c));
    }
    assert!(test.description.contains("reconstruction"));
}

/// A pickle as mmcv.dump writes pyskl's released 2D annotations: protocol 2, float16 keypoints
/// and scores (fixture written by numpy and pickle, tests/fixtures/make_fixtures.py).
#[test]
fn pyskl_mmcv_protocol2_float16_pickles_read() {
    let p = fixtures().join("pyskl/hrnet_mmcv_p2.pkl");
    let d = read_pyskl(&p, "coco17", None, &DirOptions::default()).unwrap();
    assert!(d.report.skipped.is_empty(), "{:?}", d.report.skipped);
    let s = &d.dataset.samples[0];
    assert_eq!(s.skeleton.shape(), [2, 3, 17, 3]);
    assert_eq!((s.meta.label, s.meta.subject), (Some(1), Some(1)));
    // keypoint[1, 2, 5] = (i, i+1) * 0.01 in float16, i = ((1*3 + 2)*17 + 5) * 2
    let i = (((3 + 2) * 17 + 5) * 2) as f32;
    let f16 = |x: f32| half_round(x);
    assert_eq!(s.skeleton.get(1, 2, 5, 0), f16(i * 0.01));
    assert_eq!(s.skeleton.get(1, 2, 5, 1), f16((i + 1.0) * 0.01));
    let j = ((3 + 2) * 17 + 5) as f32;
    assert_eq!(s.skeleton.get(1, 2, 5, 2), f16(j * 0.01 + 0.25));
}

/// The float16 nearest to `x` (round to nearest even), as numpy's astype(np.float16) gives.
fn half_round(x: f32) -> f32 {
    let bits = x.to_bits();
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    // normal float16 range only: 10 mantissa bits
    assert!(
        (-14..16).contains(&exp),
        "{x} outside the test's float16 range"
    );
    let drop = 13;
    let mant = bits & ((1 << 23) - 1);
    let rem = mant & ((1 << drop) - 1);
    let half = 1 << (drop - 1);
    let mut kept = bits & !((1 << drop) - 1);
    if rem > half || (rem == half && (mant >> drop) & 1 == 1) {
        kept += 1 << drop;
    }
    f32::from_bits(kept)
}

/// `.npz`: CTR-GCN's x/y arrays (written by np.savez_compressed) become labelled samples with
/// their padding dropped; an archive of one array per sequence (np.savez) becomes one sample
/// each.
#[test]
fn npz_archives_read_in_both_forms() {
    use crossglg_data::read::{read_path, Format};
    let (ds, rep, f) = read_path(
        &fixtures().join("npz/ntu_ctrgcn.npz"),
        None,
        &DirOptions::default(),
    )
    .unwrap();
    assert!(matches!(f, Format::Npz));
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!(ds.layout, "ntu25");
    assert_eq!(ds.classes.len(), 60);
    assert_eq!(ds.classes[0], "drink water");
    let names: Vec<&str> = ds.samples.iter().map(|s| s.meta.name.as_str()).collect();
    assert_eq!(names, ["train_000000", "train_000001", "test_000000"]);
    let labels: Vec<Option<usize>> = ds.samples.iter().map(|s| s.meta.label).collect();
    assert_eq!(labels, [Some(0), Some(1), Some(5)]);
    assert_eq!(ds.samples[2].meta.extra["part"], "test");
    // valid frames 4, 6, 3 of 6; two persons, the second all zero
    let shapes: Vec<[usize; 4]> = ds.samples.iter().map(|s| s.skeleton.shape()).collect();
    assert_eq!(shapes, [[2, 4, 25, 3], [2, 6, 25, 3], [2, 3, 25, 3]]);
    // x[1, f, (j*3 + c)] = (f*75 + j*3 + c) * 0.01 + 1
    let s = &ds.samples[1].skeleton;
    let want = (2 * 75 + 4 * 3 + 1) as f32 * 0.01f32 + 1.0;
    assert_eq!(s.get(0, 2, 4, 1), want);
    assert_eq!(s.get(1, 2, 4, 1), 0.0);

    let (ds, _, _) = read_path(
        &fixtures().join("npz/clips.npz"),
        None,
        &DirOptions::default(),
    )
    .unwrap();
    let names: Vec<&str> = ds.samples.iter().map(|s| s.meta.name.as_str()).collect();
    assert_eq!(names, ["wave", "kick"]);
    assert_eq!(ds.layout, "ntu25");
    assert_eq!(ds.samples[0].skeleton.shape(), [1, 4, 25, 3]);
    assert_eq!(ds.samples[1].skeleton.shape(), [2, 3, 25, 3]);
    assert_eq!(ds.samples[0].skeleton.get(0, 1, 0, 0), 75.0 * 0.01f32);
}

/// Broken archives: not a zip, a non-.npy entry, labels that do not fit; each named.
#[test]
fn npz_errors_name_the_archive_and_entry() {
    use crossglg_data::read::npz::read_npz;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let opts = DirOptions::default();
    let junk = dir.path().join("junk.npz");
    std::fs::write(&junk, b"PK not really").unwrap();
    let e = read_npz(&junk, None, &opts).unwrap_err().to_string();
    assert!(e.contains("junk.npz") && e.contains("zip"), "{e}");

    let write = |name: &str, entries: &[(&str, Vec<u8>)]| {
        let p = dir.path().join(name);
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        for (n, b) in entries {
            z.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap();
        p
    };
    let npy = |shape: &[usize], data: &[f32]| {
        let t = dir.path().join("t.npy");
        crossglg_data::read::npy::write_npy_f32(&t, shape, data).unwrap();
        std::fs::read(&t).unwrap()
    };
    let p = write("notes.npz", &[("notes.txt", b"hello".to_vec())]);
    let e = read_npz(&p, None, &opts).unwrap_err().to_string();
    assert!(e.contains("notes.txt") && e.contains(".npy"), "{e}");
    let p = write(
        "nolabels.npz",
        &[("x_train.npy", npy(&[1, 2, 75], &[0.5; 150]))],
    );
    let e = read_npz(&p, None, &opts).unwrap_err().to_string();
    assert!(e.contains("y_train"), "{e}");
    let p = write(
        "badlabels.npz",
        &[
            ("x_train.npy", npy(&[1, 2, 75], &[0.5; 150])),
            ("y_train.npy", npy(&[1], &[-3.0])),
        ],
    );
    let e = read_npz(&p, None, &opts).unwrap_err().to_string();
    assert!(e.contains("y_train[0]") && e.contains("class index"), "{e}");
    let p = write(
        "width.npz",
        &[
            ("x_train.npy", npy(&[1, 2, 70], &[0.5; 140])),
            ("y_train.npy", npy(&[1], &[0.0])),
        ],
    );
    let e = read_npz(&p, None, &opts).unwrap_err().to_string();
    assert!(
        e.contains("x_train") && e.contains("70 values per frame"),
        "{e}"
    );
    // an entry bigger than the budget is refused before it is kept
    let small = DirOptions {
        max_total_values: 10,
        ..Default::default()
    };
    let p = write(
        "big.npz",
        &[("a.npy", npy(&[800, 25, 1], &vec![0.5; 20_000]))],
    );
    let e = read_npz(&p, None, &small).unwrap_err().to_string();
    assert!(e.contains("a.npy") && e.contains("budget"), "{e}");
}

/// MMPose video predictions: 2-D keypoints with scores (coco17 by count, people ranked by score)
/// and 3-D ones (h36m17, followed by track_id); frames placed by frame_id.
#[test]
fn mmpose_predictions_read_in_2d_and_3d() {
    use crossglg_data::read::{read_path, Format};
    let dir = tempfile::tempdir().unwrap();
    let inst2 = |x: f64, s: f64| {
        let kp: Vec<[f64; 2]> = (0..17).map(|v| [x + v as f64, 2.0]).collect();
        serde_json::json!({ "keypoints": kp, "keypoint_scores": vec![s; 17], "bbox": [[0, 0, 1, 1]] })
    };
    let video = serde_json::json!([
        { "frame_id": 0, "instances": [inst2(1.0, 0.2), inst2(50.0, 0.9)] },
        { "frame_id": 2, "instances": [inst2(3.0, 0.8)] },
    ]);
    let p2 = dir.path().join("clip2d.json");
    std::fs::write(&p2, video.to_string()).unwrap();
    let (ds, _, f) = read_path(&p2, None, &DirOptions::default()).unwrap();
    assert!(matches!(f, Format::MmPose));
    assert_eq!(ds.layout, "coco17");
    let sk = &ds.samples[0].skeleton;
    assert_eq!(sk.shape(), [2, 3, 17, 3]);
    // the better-scored instance first; frame 1 empty; score as the third channel
    assert_eq!((sk.get(0, 0, 0, 0), sk.get(1, 0, 0, 0)), (50.0, 1.0));
    assert_eq!((sk.get(0, 1, 0, 0), sk.get(0, 2, 4, 0)), (0.0, 7.0));
    assert_eq!(sk.get(0, 2, 4, 2), 0.8);

    let inst3 = |x: f64, track: i64| {
        let kp: Vec<[f64; 3]> = (0..17).map(|v| [x, v as f64, 0.5]).collect();
        serde_json::json!({ "keypoints": kp, "keypoint_scores": vec![0.1; 17], "track_id": track })
    };
    let video = serde_json::json!([
        { "frame_id": 10, "instances": [inst3(1.0, 7), inst3(2.0, 4)] },
        { "frame_id": 11, "instances": [inst3(3.0, 4), inst3(4.0, 7)] },
    ]);
    let p3 = dir.path().join("clip3d.json");
    std::fs::write(&p3, video.to_string()).unwrap();
    let (ds, _, _) = read_path(&p3, None, &DirOptions::default()).unwrap();
    assert_eq!(ds.layout, "h36m17");
    let sk = &ds.samples[0].skeleton;
    assert_eq!(sk.shape(), [2, 2, 17, 3]);
    // track 7 is person 0 in both frames, whatever the order MMPose lists them in
    assert_eq!((sk.get(0, 0, 0, 0), sk.get(0, 1, 0, 0)), (1.0, 4.0));
    assert_eq!((sk.get(1, 0, 0, 0), sk.get(1, 1, 0, 0)), (2.0, 3.0));
    assert_eq!((sk.get(0, 0, 5, 1), sk.get(0, 0, 5, 2)), (5.0, 0.5));

    // a folder of predictions reads as one sample per video
    let folder = dir.path().join("preds");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(&p2, folder.join("a.json")).unwrap();
    std::fs::copy(&p2, folder.join("b.json")).unwrap();
    let (ds, _, f) = read_path(&folder, None, &DirOptions::default()).unwrap();
    assert!(matches!(f, Format::MmPose));
    assert_eq!(ds.samples.len(), 2);

    // whole-body keypoints need a layout; a wrong count names the instance
    let wb: Vec<[f64; 2]> = vec![[0.0, 0.0]; 133];
    let p = dir.path().join("wholebody.json");
    std::fs::write(
        &p,
        serde_json::json!([{ "frame_id": 0, "instances": [{ "keypoints": wb, "keypoint_scores": vec![1.0; 133] }] }])
            .to_string(),
    )
    .unwrap();
    let e = read_path(&p, None, &DirOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wholebody.json") && e.contains("133 keypoints"),
        "{e}"
    );
    let e = read_path(&p, Some("coco17"), &DirOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("instances[0]") && e.contains("133"), "{e}");
}
