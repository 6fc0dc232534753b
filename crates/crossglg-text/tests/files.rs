//! Description files: validation errors, key-joint targets on obvious cases, `show_class`, and
//! every shipped file under `descriptions/`.

use std::collections::BTreeMap;
use std::path::Path;

use crossglg_data::Layout;
use crossglg_text::keyjoints::{class_target, KeyJointSource};
use crossglg_text::{
    key_joint_targets, show_class, validate, validate_path, ClassDescription, DescriptionFile,
    KeyJointConfig, Lexicon, Provenance,
};

fn ntu() -> Layout {
    Layout::builtin("ntu25").unwrap()
}

fn class(id: usize, name: &str, global: &str, layout: &Layout) -> ClassDescription {
    ClassDescription {
        id,
        name: name.into(),
        global: global.into(),
        key_joints: vec![],
        local: layout
            .joints
            .iter()
            .map(|j| (j.clone(), format!("the {} moves", j.replace('_', " "))))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn file(layout: &Layout, classes: Vec<ClassDescription>) -> DescriptionFile {
    let mut f = DescriptionFile::new("toy", &layout.name, Provenance::default());
    f.classes = classes;
    f
}

fn weight(t: &[f32], layout: &Layout, names: &[&str]) -> f32 {
    names
        .iter()
        .map(|n| t[layout.joint_index(n).unwrap()])
        .sum()
}

#[test]
fn kicking_weighs_feet_and_legs_drinking_weighs_hand_and_head() {
    let l = ntu();
    let lex = Lexicon::for_layout(&l);
    let cfg = KeyJointConfig::default();
    let kick = class(
        0,
        "kicking",
        "The person swings the right leg forward and kicks with the right foot, bending the knee first while the arms keep balance.",
        &l,
    );
    let (t, src) = class_target(&kick, &l, &lex, &cfg);
    assert_eq!(src, KeyJointSource::Lexicon);
    assert!((t.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let lower = weight(
        &t,
        &l,
        &[
            "right_hip",
            "right_knee",
            "right_ankle",
            "right_foot",
            "left_knee",
            "left_ankle",
            "left_foot",
        ],
    );
    let hands = weight(
        &t,
        &l,
        &[
            "left_hand",
            "right_hand",
            "left_hand_tip",
            "right_hand_tip",
            "head",
            "neck",
        ],
    );
    assert!(lower > 0.5, "legs and feet get most mass: {lower}");
    assert!(t[l.joint_index("right_foot").unwrap()] > t[l.joint_index("left_foot").unwrap()]);
    assert!(t[l.joint_index("right_knee").unwrap()] > 3.0 * t[l.joint_index("head").unwrap()]);
    assert!(hands < 0.1, "{hands}");

    let drink = class(
        1,
        "drink water",
        "He holds a cup in his hand, lifts it to his mouth and tilts his head back to drink.",
        &l,
    );
    let (t, _) = class_target(&drink, &l, &lex, &cfg);
    let upper = weight(
        &t,
        &l,
        &[
            "head",
            "neck",
            "right_hand",
            "left_hand",
            "right_wrist",
            "left_wrist",
        ],
    );
    assert!(upper > 0.5, "{upper}");
    for foot in ["left_foot", "right_foot", "left_knee"] {
        assert!(t[l.joint_index("head").unwrap()] > 3.0 * t[l.joint_index(foot).unwrap()]);
        assert!(t[l.joint_index("right_hand").unwrap()] > 3.0 * t[l.joint_index(foot).unwrap()]);
    }

    // A structured list wins over the text.
    let mut listed = kick.clone();
    listed.key_joints = vec!["head".into()];
    let (t, src) = class_target(&listed, &l, &lex, &cfg);
    assert_eq!(src, KeyJointSource::Structured);
    assert!((t[3] - (0.9 + 0.1 / 25.0)).abs() < 1e-6);

    // Nothing in the text: the class name is read instead.
    let shake = class(2, "shake head", "Done several times, quickly.", &l);
    let (t, src) = class_target(&shake, &l, &lex, &cfg);
    assert_eq!(src, KeyJointSource::Lexicon);
    assert!(t[l.joint_index("head").unwrap()] > 0.4);

    let rows = key_joint_targets(&file(&l, vec![drink, kick]), &l, &cfg);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.len() == 25));
}

#[test]
fn the_lexicon_follows_the_layout() {
    // A Kinect v1 layout (NW-UCLA, MSR Action3D joint names), written inline so this test does
    // not depend on which layouts crossglg-data ships.
    let toml = r#"
name = "kinect20"
center = "spine"
joints = ["hip_center", "spine", "shoulder_center", "head", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
  "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee", "left_ankle", "left_foot",
  "right_hip", "right_knee", "right_ankle", "right_foot"]
edges = [["spine", "hip_center"], ["shoulder_center", "spine"], ["head", "shoulder_center"],
  ["left_shoulder", "shoulder_center"], ["left_elbow", "left_shoulder"], ["left_wrist", "left_elbow"], ["left_hand", "left_wrist"],
  ["right_shoulder", "shoulder_center"], ["right_elbow", "right_shoulder"], ["right_wrist", "right_elbow"], ["right_hand", "right_wrist"],
  ["left_hip", "hip_center"], ["left_knee", "left_hip"], ["left_ankle", "left_knee"], ["left_foot", "left_ankle"],
  ["right_hip", "hip_center"], ["right_knee", "right_hip"], ["right_ankle", "right_knee"], ["right_foot", "right_ankle"]]
left = ["left_shoulder", "left_elbow", "left_wrist", "left_hand", "left_hip", "left_knee", "left_ankle", "left_foot"]
right = ["right_shoulder", "right_elbow", "right_wrist", "right_hand", "right_hip", "right_knee", "right_ankle", "right_foot"]
[parts]
head = ["shoulder_center", "head"]
torso = ["hip_center", "spine", "shoulder_center", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]
arms = ["left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist"]
hands = ["left_wrist", "left_hand", "right_wrist", "right_hand"]
legs = ["left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle"]
feet = ["left_ankle", "left_foot", "right_ankle", "right_foot"]
"#;
    let l = Layout::from_toml_str(toml, "inline").unwrap();
    let lex = Lexicon::for_layout(&l);
    let names = |text: &str| -> Vec<Vec<String>> {
        lex.find(text)
            .into_iter()
            .map(|m| {
                let mut v: Vec<String> = m.joints.iter().map(|&j| l.joints[j].clone()).collect();
                v.sort();
                v
            })
            .collect()
    };
    assert_eq!(names("his neck"), [["shoulder_center"]]);
    assert_eq!(names("the hip center"), [["hip_center"]]);
    assert_eq!(names("right hand"), [["right_hand", "right_wrist"]]);
    assert_eq!(
        names("fingers"),
        [["left_hand", "left_wrist", "right_hand", "right_wrist"]]
    );
}

#[test]
fn validation_lists_every_problem() {
    let l = ntu();
    let mut a = class(0, "a", "text", &l);
    a.local.remove("head");
    a.local.insert("tail".into(), "wags".into());
    a.key_joints = vec!["elbow".into()];
    let mut b = class(0, "a", "  ", &l);
    b.local.insert("neck".into(), "".into());
    let f = file(&l, vec![a, b]);
    let msg = validate(&f, &l, "x.json").unwrap_err().to_string();
    for needle in [
        "x.json",
        "no local description for joint(s) head",
        "unknown joint `tail`",
        "key joint `elbow` is not a joint",
        "id 0 already used",
        "classes[1] (id 0, `a`): name already used by classes[0]",
        "empty global description",
        "empty local description for joint `neck`",
        "missing 1",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    }
    let mut other = file(&l, vec![class(0, "a", "t", &l)]);
    other.layout = "msr20".into();
    let msg = validate(&other, &l, "y.json").unwrap_err().to_string();
    assert!(msg.contains("layout `msr20`"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, r#"{"format": "crossglg-descriptions/2", "dataset": "d", "layout": "ntu25", "provenance": {"model": "m"}, "classes": []}"#).unwrap();
    let msg = validate_path(&p, None).unwrap_err().to_string();
    assert!(
        msg.contains("bad.json") && msg.contains("crossglg-descriptions/1"),
        "{msg}"
    );
    std::fs::write(&p, "{not json").unwrap();
    assert!(validate_path(&p, None)
        .unwrap_err()
        .to_string()
        .contains("bad.json"));
    let good = dir.path().join("good.json");
    file(&l, vec![class(0, "a", "t", &l)]).save(&good).unwrap();
    assert!(validate_path(&good, None)
        .unwrap()
        .contains("valid (1 classes"));
}

#[test]
fn show_class_prints_texts_and_ranked_joints() {
    let l = ntu();
    let mut c = class(
        0,
        "drink water",
        "He lifts the cup with his right hand to his mouth.",
        &l,
    );
    c.key_joints = vec!["right_hand".into(), "head".into()];
    let f = file(&l, vec![c]);
    let s = show_class(&f, "drink water", &l, &KeyJointConfig::default()).unwrap();
    assert!(s.contains("class 0 `drink water`"));
    assert!(s.contains("listed: right_hand, head"));
    let hand = s.find("  right_hand ").unwrap();
    assert!(s[hand..].lines().next().unwrap().contains("#####"));
    assert!(s.contains("(23 other joints at 0.004 each)"), "{s}");
    assert!(s.contains("the spine base moves"));
    assert!(show_class(&f, "0", &l, &KeyJointConfig::default()).is_ok());
    assert!(show_class(&f, "swim", &l, &KeyJointConfig::default()).is_err());
}

/// Every description file shipped in `descriptions/` validates against its layout and gives a
/// non-degenerate key-joint target for every class.
#[test]
fn shipped_description_files_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // No shipped files yet.
    };
    let cfg = KeyJointConfig::default();
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let f = DescriptionFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let layout = Layout::load(&f.layout)
            .unwrap_or_else(|e| panic!("{}: layout `{}`: {e}", path.display(), f.layout));
        validate(&f, &layout, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
        let lex = Lexicon::for_layout(&layout);
        let v = layout.num_joints() as f32;
        for c in &f.classes {
            let (t, src) = class_target(c, &layout, &lex, &cfg);
            assert_ne!(
                src,
                KeyJointSource::None,
                "{}: class `{}` has no key joints",
                path.display(),
                c.name
            );
            let max = t.iter().copied().fold(0.0, f32::max);
            let keys = t.iter().filter(|&&x| x > cfg.floor / v + 1e-6).count();
            assert!(
                max > 2.0 / v && keys < layout.num_joints(),
                "{}: class `{}` key-joint target is nearly uniform",
                path.display(),
                c.name
            );
        }
    }
}

/// The one bank builder with the hashed encoder: rows are the encoder's own embeddings, in id
/// order, and the bank survives a save / load round trip with its metadata.
#[test]
fn hashed_bank_builds_saves_and_loads() {
    use crossglg_text::bank::EmbedOptions;
    use crossglg_text::hashed::hashed_embedding;
    use crossglg_text::{build_bank, TextBank, TextEncoder};
    let layout = ntu();
    let f = file(
        &layout,
        vec![
            class(1, "kick", "a kick with the right foot", &layout),
            class(0, "wave", "the right hand waves", &layout),
        ],
    );
    let enc = TextEncoder::Hashed { dim: 16 };
    let (bank, s) = build_bank(&f, &layout, &enc, &EmbedOptions::default()).unwrap();
    assert_eq!((s.classes, s.joints, s.dim), (2, 25, 16));
    assert_eq!(bank.classes, ["wave", "kick"]);
    let g = bank.global.to_vec2::<f32>().unwrap();
    assert_eq!(g[0], hashed_embedding("the right hand waves", 16));
    let local = bank.local.to_vec3::<f32>().unwrap();
    assert_eq!(local[1][3], hashed_embedding("the head moves", 16));
    assert_eq!(bank.meta["encoder"], "hashed-16");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bank.safetensors");
    bank.save(&out).unwrap();
    let back = TextBank::load(&out, &candle_core::Device::Cpu).unwrap();
    assert_eq!(back.classes, bank.classes);
    assert_eq!(back.joints, bank.joints);
    assert_eq!(back.meta, bank.meta);
    assert_eq!(back.global.to_vec2::<f32>().unwrap(), g);
    assert_eq!(back.local.to_vec3::<f32>().unwrap(), local);
    assert_eq!(
        back.key_joints.to_vec2::<f32>().unwrap(),
        bank.key_joints.to_vec2::<f32>().unwrap()
    );
}

/// Description files under random bytes and byte-level mutations of a shipped file: parsing,
/// validation and key-joint targets never panic.
mod mutations {
    use super::*;
    use proptest::prelude::*;

    fn check(bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(f) = DescriptionFile::from_json_str(&text, Path::new("m.json")) {
            let layout = Layout::builtin("msr20").unwrap();
            if validate(&f, &layout, "m.json").is_ok() {
                let _ = key_joint_targets(&f, &layout, &KeyJointConfig::default());
            }
        }
    }

    fn seed() -> Vec<u8> {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions/msr-action3d.json"))
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }

        #[test]
        fn mutated_shipped_file_never_panics(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let b = crossglg_data::fuzz::mutate(seed(), &edits);
            check(&b);
        }
    }

    #[test]
    fn the_seed_is_valid() {
        let f =
            DescriptionFile::from_json_str(std::str::from_utf8(&seed()).unwrap(), Path::new("s"))
                .unwrap();
        validate(&f, &Layout::builtin("msr20").unwrap(), "s").unwrap();
    }
}

/// A description file names its layout; that name must not make the program read elsewhere:
/// a path outside the file's folder is refused without being read (its content never appears
/// in the message), a layout file beside it is used.
#[test]
fn description_layout_paths_stay_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = ntu();
    let mut f = file(&layout, vec![class(0, "wave", "a wave", &layout)]);
    let path = dir.path().join("d.json");
    for bad in ["/etc/passwd", "../outside.toml", "/dev/zero"] {
        f.layout = bad.to_string();
        std::fs::write(&path, serde_json::to_string(&f).unwrap()).unwrap();
        let e = validate_path(&path, None).unwrap_err().to_string();
        assert!(
            e.contains("d.json") && e.contains(bad) && e.contains("inside the folder"),
            "{bad}: {e}"
        );
        assert!(!e.contains("root:"), "{bad}: quotes the file: {e}");
    }
    let mut own = layout.clone();
    own.name = "my25".into();
    std::fs::write(dir.path().join("my25.toml"), own.to_toml()).unwrap();
    f.layout = "my25.toml".into();
    std::fs::write(&path, serde_json::to_string(&f).unwrap()).unwrap();
    let e = validate_path(&path, None);
    // read (beside the file); the name check then compares `my25.toml` with `my25`
    assert!(
        e.as_ref()
            .map_or_else(|e| !e.to_string().contains("inside the folder"), |_| true),
        "{e:?}"
    );
}

/// A description file written for a layout file (`"layout": "mine.toml"`, whose own name is
/// `mine`) builds a bank: the builder checks the texts against the layout's joints and leaves
/// the file-to-layout check to `validate`, which knows the file's folder. It used to resolve
/// `mine.toml` against a made-up origin and fail.
#[test]
fn bank_builds_for_a_layout_file() {
    use crossglg_text::bank::EmbedOptions;
    use crossglg_text::{build_bank, TextEncoder};
    let dir = tempfile::tempdir().unwrap();
    let text = ntu().to_toml();
    assert!(text.contains("name = \"ntu25\""), "{text}");
    let text = text.replacen("name = \"ntu25\"", "name = \"mine\"", 1);
    std::fs::write(dir.path().join("mine.toml"), text).unwrap();
    let path = dir.path().join("d.json");
    let layout = Layout::load_named_in("mine.toml", &path).unwrap();
    assert_eq!(layout.name, "mine");
    let mut f = file(
        &layout,
        vec![class(0, "wave", "the right hand waves", &layout)],
    );
    f.layout = "mine.toml".into();
    crossglg_text::validate(&f, &layout, &path.display().to_string()).unwrap();
    let enc = TextEncoder::Hashed { dim: 8 };
    let (bank, _) = build_bank(&f, &layout, &enc, &EmbedOptions::default()).unwrap();
    assert_eq!(bank.classes, ["wave"]);
    // the texts are still checked against the layout's joints
    f.classes[0].key_joints = vec!["tail".into()];
    let e = build_bank(&f, &layout, &enc, &EmbedOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tail"), "{e}");
}
