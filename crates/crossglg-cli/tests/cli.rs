//! The `crossglg` binary as a user runs it, on the real data under `$CROSSGLG_DATA`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data_dir() -> PathBuf {
    let p = std::env::var_os("CROSSGLG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        p.is_dir(),
        "real data not found at {}: set CROSSGLG_DATA to the shared data folder",
        p.display()
    );
    p
}

fn crossglg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossglg"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let o = crossglg(args);
    assert!(
        o.status.success(),
        "crossglg {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn split_ntu120_prints_the_official_exemplars() {
    let out = ok(&["data", "split", "ntu120"]);
    let anchors = std::fs::read_to_string(
        data_dir().join("ntu-rgbd-meta/one-shot-lists/one_shot_eval_anchors.txt"),
    )
    .unwrap();
    let names: Vec<&str> = anchors
        .lines()
        .filter_map(|l| l.split('/').next_back()?.split('.').next())
        .filter(|n| n.starts_with('S'))
        .collect();
    assert_eq!(names.len(), 20);
    for n in names {
        assert!(out.contains(n), "exemplar {n} missing from:\n{out}");
    }
    assert!(out.contains("novel classes (20)"), "{out}");
}

/// `convert` then `inspect` of the packed file gives the same statistics as inspecting the
/// raw folder: frames, bodies, joints, value ranges, per-class counts.
#[test]
fn convert_then_inspect_round_trips_nwucla_and_msr() {
    let tmp = tempfile::tempdir().unwrap();
    for (format, dir) in [
        ("msr", "msr-action3d/MSRAction3DSkeletonReal3D"),
        ("nwucla", "nw-ucla/all_sqe"),
    ] {
        let raw = data_dir().join(dir);
        let packed = tmp.path().join(format!("{format}.safetensors"));
        ok(&[
            "data",
            "convert",
            "--format",
            format,
            raw.to_str().unwrap(),
            "--out",
            packed.to_str().unwrap(),
        ]);
        let strip = |s: String| {
            let mut v: serde_json::Value = serde_json::from_str(&s).unwrap();
            for k in ["source", "format", "skipped", "flagged"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        };
        let a = strip(ok(&["data", "inspect", "--json", raw.to_str().unwrap()]));
        let b = strip(ok(&["data", "inspect", "--json", packed.to_str().unwrap()]));
        assert_eq!(a, b, "{format}: packed file differs from the raw folder");
    }
}

#[test]
fn shipped_descriptions_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crossglg-text/descriptions");
    for f in ["ntu120.json", "nw-ucla.json", "msr-action3d.json"] {
        ok(&["text", "validate", dir.join(f).to_str().unwrap()]);
    }
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crossglg-train/demo/synthetic-descriptions.json");
    ok(&["text", "validate", demo.to_str().unwrap()]);
}

#[test]
fn bad_inputs_fail_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.skeleton");
    let o = crossglg(&["data", "inspect", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.skeleton"));

    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "epochs = \"many\"\n").unwrap();
    let o = crossglg(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
