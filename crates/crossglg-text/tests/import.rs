//! Importers on the real published files. They need `$CROSSGLG_DATA` (default
//! `<workspace>/../shared/data`) and fail, naming it, when it is absent.

use std::path::PathBuf;

use crossglg_data::Layout;
use crossglg_text::import::{import_gap, import_skeletonagent, GapSet};
use crossglg_text::keyjoints::{class_target, KeyJointSource};
use crossglg_text::{validate, KeyJointConfig, Lexicon};

fn text_dir() -> PathBuf {
    let root = match std::env::var_os("CROSSGLG_DATA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    };
    let dir = root.join("text-descriptions");
    assert!(
        dir.is_dir(),
        "{} not found: set CROSSGLG_DATA to the shared data folder",
        dir.display()
    );
    dir
}

fn kinect_v1() -> Layout {
    // NW-UCLA's 20 Kinect v1 joints, inline so the test does not depend on crossglg-data's list.
    let toml = r#"
name = "nwucla20"
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
    Layout::from_toml_str(toml, "inline nwucla20").unwrap()
}

#[test]
fn gap_ntu120_imports_and_validates() {
    let l = Layout::builtin("ntu25").unwrap();
    let f = import_gap(&text_dir().join("gap"), GapSet::Ntu120, &l).unwrap();
    validate(&f, &l, "gap ntu120").unwrap();
    assert_eq!(f.classes.len(), 120);
    assert_eq!(f.classes[0].name, "drink water");
    assert!(f.classes[0].global.starts_with("The man is drinking water"));
    // head text on the head joint, hand text on the hand tip, arm + hand texts on the wrist.
    assert_eq!(f.classes[0].local["head"], "head: head tilts back slightly");
    assert_eq!(
        f.classes[0].local["right_hand_tip"],
        "hand: hand grasps cup"
    );
    assert!(f.classes[0].local["left_wrist"].contains("arm: arm lifts cup to mouth"));
    assert_eq!(f.classes[119].name, "rock-paper-scissors");
    // No key-joint lists: targets come from the lexicon; "drink water" weighs hand and head.
    let lex = Lexicon::for_layout(&l);
    let (t, src) = class_target(&f.classes[0], &l, &lex, &KeyJointConfig::default());
    assert_eq!(src, KeyJointSource::Lexicon);
    let foot = t[l.joint_index("left_foot").unwrap()];
    assert!(t[l.joint_index("right_hand").unwrap()] > 2.0 * foot);
}

#[test]
fn gap_nwucla_imports_onto_kinect_v1_joints() {
    let l = kinect_v1();
    let f = import_gap(&text_dir().join("gap"), GapSet::NwUcla, &l).unwrap();
    validate(&f, &l, "gap ucla").unwrap();
    assert_eq!(f.classes.len(), 10);
    assert_eq!(f.classes[0].name, "pick up with one hand");
    assert_eq!(f.classes[0].local["head"], "head: tilts slightly forward");
    assert!(f.classes[0].local["hip_center"].starts_with("hip: "));
}

#[test]
fn skeletonagent_ntu120_keeps_critical_joints() {
    let l = Layout::builtin("ntu25").unwrap();
    let f = import_skeletonagent(&text_dir().join("skeletonagent"), 120, &l).unwrap();
    validate(&f, &l, "skeletonagent").unwrap();
    assert_eq!(f.classes.len(), 120);
    let c = &f.classes[0];
    assert_eq!(c.name, "drink water");
    // Round 3 answer: 3, 4, 5, ... 21, 22, 24 (1-based NTU indices).
    assert_eq!(&c.key_joints[..3], ["neck", "head", "left_shoulder"]);
    assert_eq!(c.key_joints.len(), 15);
    assert!(c.key_joints.contains(&"spine_shoulder".to_string()));
    // Round 4 texts replace body-part texts for the joints they cover.
    assert_eq!(
        c.local["left_wrist"],
        "Bends to adjust cup angle for drinking."
    );
    assert!(c.local["left_knee"].starts_with("leg: "));
    let f60 = import_skeletonagent(&text_dir().join("skeletonagent"), 60, &l).unwrap();
    assert_eq!(f60.classes.len(), 60);
    assert!(import_skeletonagent(&text_dir().join("skeletonagent"), 60, &kinect_v1()).is_err());
}
