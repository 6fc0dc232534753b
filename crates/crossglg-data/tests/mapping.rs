//! The shipped layout mappings.

use crossglg_data::mapping::{map_skeleton, Mapping, BUILTIN_MAPPINGS};
use crossglg_data::Skeleton;

#[test]
fn shipped_mappings_name_joints_of_both_layouts() {
    for (name, _) in BUILTIN_MAPPINGS {
        // `load` resolves every joint name against both layouts and fails on any unknown one.
        let m = Mapping::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.target.name, "ntu25", "{name}");
        assert!(
            m.missing().is_empty(),
            "{name} leaves {:?} unmapped",
            m.missing()
        );
    }
    let m = Mapping::load("coco17_to_ntu25").unwrap();
    let src = &m.source;
    let mut sk = Skeleton::zeros(1, 1, src.num_joints(), 3);
    let set = |sk: &mut Skeleton, j: &str, x: f32, y: f32| {
        let v = src.joint_index(j).unwrap();
        sk.set(0, 0, v, 0, x);
        sk.set(0, 0, v, 1, y);
    };
    set(&mut sk, "left_hip", 1.0, 0.0);
    set(&mut sk, "right_hip", 3.0, 0.0);
    set(&mut sk, "left_wrist", 7.0, 5.0);
    let out = map_skeleton(&sk, &m).unwrap();
    let tgt = &m.target;
    let at = |j: &str| {
        let v = tgt.joint_index(j).unwrap();
        [out.get(0, 0, v, 0), out.get(0, 0, v, 1)]
    };
    assert_eq!(at("spine_base"), [2.0, 0.0]);
    // Shoulders are missing in this frame, so spine_mid averages only the hips.
    assert_eq!(at("spine_mid"), [2.0, 0.0]);
    assert_eq!(at("left_hand_tip"), [7.0, 5.0]);
    assert_eq!(at("head"), [0.0, 0.0]);
    let e = map_skeleton(&Skeleton::zeros(1, 1, 25, 3), &m)
        .unwrap_err()
        .to_string();
    assert!(e.contains("coco17") && e.contains("17"), "{e}");
}

#[test]
fn kinect_v1_layouts_map_joint_for_joint_by_name() {
    use crossglg_data::Layout;
    let msr = Layout::load("msr20").unwrap();
    let ucla = Layout::load("nwucla20").unwrap();
    let m = Mapping::by_name(&msr, &ucla).expect("the two Kinect v1 layouts name the same joints");
    let perm = m.permutation().expect("one source joint per target joint");
    for (t, &s) in perm.iter().enumerate() {
        assert_eq!(ucla.joints[t], msr.joints[s]);
    }
    // The permutation moves each joint's coordinates, as the general mapping does.
    let mut sk = Skeleton::zeros(1, 2, 20, 3);
    for (i, x) in sk.data.iter_mut().enumerate() {
        *x = i as f32 + 1.0;
    }
    let fast = sk.select_joints(&perm);
    assert_eq!(fast, map_skeleton(&sk, &m).unwrap());
    let head = ucla.joint_index("head").unwrap();
    let msr_head = msr.joint_index("head").unwrap();
    assert_eq!(fast.get(0, 1, head, 2), sk.get(0, 1, msr_head, 2));

    // Different joint names: no joint-for-joint mapping.
    assert!(Mapping::by_name(&Layout::load("coco17").unwrap(), &ucla).is_none());
    assert!(Mapping::by_name(&Layout::load("ntu25").unwrap(), &ucla).is_none());
    // An averaging mapping is not a permutation.
    assert!(Mapping::load("coco17_to_ntu25")
        .unwrap()
        .permutation()
        .is_none());
}
