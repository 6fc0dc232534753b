//! The file layers other than the skeleton readers (those are in `readers.rs::props`) under
//! random bytes and byte-level mutations of valid files: tagged safetensors, layout, mapping
//! and split TOML. Nothing may panic; every input ends in a value or an error.

use std::collections::HashMap;
use std::path::Path;

use crossglg_data::layout::{Layout, BUILTIN};
use crossglg_data::mapping::{MappingFile, BUILTIN_MAPPINGS};
use crossglg_data::protocol::Split;
use crossglg_data::read::openpose::read_openpose_dir;
use crossglg_data::read::DirOptions;
use crossglg_data::tagged::{self, Owned, TaggedFile};
use proptest::prelude::*;

fn tagged_seed() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    let meta = HashMap::from([("crossglg.x".to_string(), "{\"a\": 1}".to_string())]);
    let vals = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    tagged::write_owned(
        &p,
        "gallery",
        1,
        meta,
        vec![("embeddings", Owned::f32(vec![2, 3], &vals))],
    )
    .unwrap();
    std::fs::read(&p).unwrap()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut s = vec![tagged_seed()];
    s.extend(BUILTIN.iter().take(2).map(|(_, t)| t.as_bytes().to_vec()));
    s.extend(
        BUILTIN_MAPPINGS
            .iter()
            .take(1)
            .map(|(_, t)| t.as_bytes().to_vec()),
    );
    s.push(
        b"name = \"x\"\nnovel = [1, 2]\nauxiliary = [0, 3]\n[exemplars]\n1 = \"a\"\n2 = [\"b\"]\n"
            .to_vec(),
    );
    let kp: Vec<f64> = (0..75).map(|i| i as f64 * 0.5).collect();
    let frame = serde_json::json!({ "people": [{ "person_id": [-1], "pose_keypoints_2d": kp }] });
    s.push(frame.to_string().into_bytes());
    let pose: Vec<f64> = (0..36).map(|i| i as f64 * 0.01).collect();
    let video = serde_json::json!({ "data": [{ "frame_index": 1, "skeleton": [{ "pose": pose, "score": vec![0.5; 18] }] }], "label": "x", "label_index": 3 });
    s.push(video.to_string().into_bytes());
    let kp: Vec<[f64; 2]> = (0..17).map(|v| [v as f64, 1.0]).collect();
    let mm = serde_json::json!([{ "frame_id": 0, "instances": [{ "keypoints": kp, "keypoint_scores": vec![0.5; 17] }] }]);
    s.push(mm.to_string().into_bytes());
    let npz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/npz/clips.npz");
    s.push(std::fs::read(npz).unwrap());
    s
}

/// Every layer on one input; the results are dropped, a panic fails the test.
fn all_layers(bytes: &[u8]) {
    let p = Path::new("m.bin");
    if let Ok(f) = TaggedFile::from_bytes(p, bytes.to_vec(), "gallery", 1) {
        let _ = f.f32("embeddings", 2);
        let _ = f.meta_json::<serde_json::Value>("crossglg.x");
    }
    let text = String::from_utf8_lossy(bytes);
    let _ = Layout::from_toml_str(&text, "m.toml");
    let _ = MappingFile::from_toml_str(&text, "m.toml");
    let _ = Split::from_toml_str(&text, "m.toml", Path::new("."));
    // OpenPose output: the bytes as one frame file of a sequence
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x_000000000000_keypoints.json"), bytes).unwrap();
    let body25 = Layout::builtin("body25").unwrap();
    let _ = read_openpose_dir(dir.path(), &body25, &DirOptions::default());
    let _ = crossglg_data::read::openpose::guess_layout(dir.path());
    // Kinetics-skeleton: the bytes as one video
    let v = dir.path().join("v.json");
    std::fs::write(&v, bytes).unwrap();
    let op18 = Layout::builtin("openpose18").unwrap();
    let _ = crossglg_data::read::kinetics::read_kinetics(&v, &op18, 2);
    let coco = Layout::builtin("coco17").unwrap();
    let _ = crossglg_data::read::mmpose::read_mmpose(&v, &coco, 2);
    let _ = crossglg_data::read::mmpose::guess_layout(&v);
    // .npz: the bytes as an archive
    let z = dir.path().join("a.npz");
    std::fs::write(&z, bytes).unwrap();
    let _ = crossglg_data::read::npz::read_npz(&z, None, &DirOptions::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        all_layers(&bytes);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        which in 0usize..9,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
    ) {
        let b = crossglg_data::fuzz::mutate(seeds().swap_remove(which), &edits);
        all_layers(&b);
    }
}

/// The seeds themselves parse, so the mutations start from valid files.
#[test]
fn seeds_are_valid() {
    let s = seeds();
    let f = TaggedFile::from_bytes(Path::new("t"), s[0].clone(), "gallery", 1).unwrap();
    assert_eq!(f.f32("embeddings", 2).unwrap().0, [2, 3]);
    Layout::from_toml_str(std::str::from_utf8(&s[1]).unwrap(), "l").unwrap();
    MappingFile::from_toml_str(std::str::from_utf8(&s[3]).unwrap(), "m").unwrap();
    Split::from_toml_str(std::str::from_utf8(&s[4]).unwrap(), "s", Path::new(".")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x_000000000000_keypoints.json"), &s[5]).unwrap();
    let body25 = Layout::builtin("body25").unwrap();
    let (d, _) = read_openpose_dir(dir.path(), &body25, &DirOptions::default()).unwrap();
    assert_eq!(d.samples.len(), 1);
}
