#![allow(dead_code)]
use crossglg_model::Graph;

/// NTU RGB+D 25-joint Kinect v2 bones (0-based, child -> parent), as the data crate's
/// `ntu25` layout lists them; centre = spine_mid. Test fixture only: the model never
/// hardcodes a skeleton.
pub fn ntu25() -> Graph {
    let edges = vec![
        (1, 0),
        (20, 1),
        (2, 20),
        (3, 2),
        (4, 20),
        (5, 4),
        (6, 5),
        (7, 6),
        (8, 20),
        (9, 8),
        (10, 9),
        (11, 10),
        (12, 0),
        (13, 12),
        (14, 13),
        (15, 14),
        (16, 0),
        (17, 16),
        (18, 17),
        (19, 18),
        (21, 22),
        (22, 7),
        (23, 24),
        (24, 11),
    ];
    Graph::new(25, edges, 1).expect("valid fixture")
}

/// A 6-joint toy skeleton: a spine 0-1-2 with two arms 3-1 and 4-3 and a leg 5-0.
pub fn toy() -> Graph {
    Graph::new(6, vec![(1, 0), (2, 1), (3, 1), (4, 3), (5, 0)], 1).expect("valid fixture")
}
