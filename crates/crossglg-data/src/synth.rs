//! A synthetic action generator: a kinematic body on any skeleton layout performing
//! parametrised motions, with per-subject variation, camera views and noise. It gives tests,
//! demos and benchmarks a dataset with the structure of a real one (classes, subjects, views,
//! replications) without any third-party data.
//!
//! The body is built from joint *roles* (pelvis, shoulder, elbow, knee, ...) recognised from the
//! layout's joint names, its left/right lists and, for names it does not know, its body parts
//! and edges. Each role has a place on a 1.7 m template body; motions are rotations of
//! role-defined limb segments about their proximal pivots (forward kinematics, distal first).

use std::collections::BTreeMap;

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layout::{Layout, LayoutError};
use crate::preprocess::matmul3;
use crate::rng::{keyed_rng, normal, uniform};
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("synth config: {0}")]
    Config(String),
}

/// A built-in motion: class name and what the body does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Motion {
    pub name: &'static str,
    pub description: &'static str,
}

/// The built-in motions, in label order when `SynthConfig::classes` is empty.
pub const MOTIONS: &[Motion] = &[
    Motion { name: "wave", description: "raise the right arm to the side and swing the forearm left and right above the shoulder" },
    Motion { name: "punch", description: "repeatedly thrust the right fist straight forward from a bent-arm guard" },
    Motion { name: "kick", description: "swing the right leg forward from the hip while the knee extends, then bring it back" },
    Motion { name: "squat", description: "bend hips and knees to lower the body, arms reaching forward, then stand up" },
    Motion { name: "jump", description: "crouch, then jump straight up with both arms swinging upward, land and crouch again" },
    Motion { name: "turn", description: "turn the whole body around the vertical axis while stepping in place" },
    Motion { name: "bow", description: "bend the upper body forward from the hips with the head lowered, then straighten" },
    Motion { name: "clap", description: "hold both arms forward, repeatedly spread the hands apart and bring them together in front of the chest" },
    Motion { name: "raise_arms", description: "lift both arms sideways until the hands are above the head, hold, then lower them" },
    Motion { name: "side_step", description: "step sideways and back, the legs spreading and closing" },
    Motion { name: "nod", description: "tilt the head forward and back several times" },
    Motion { name: "shake_head", description: "turn the head left and right several times" },
    Motion { name: "march", description: "march on the spot, knees lifted alternately, arms swinging opposite to the legs" },
    Motion { name: "arm_circles", description: "hold both arms out to the sides and move them in small circles" },
    Motion { name: "point", description: "raise the straight right arm forward to point at something and hold it" },
    Motion { name: "side_bend", description: "bend the upper body to the left and to the right, hips still" },
    Motion { name: "throw", description: "wind the right arm up and back over the shoulder, then swing it forward and down to throw" },
];

/// Generator settings (TOML-friendly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Built-in layout name or path to a layout TOML file.
    pub layout: String,
    /// Motion names from [`MOTIONS`]; empty = all, in that order.
    pub classes: Vec<String>,
    pub samples_per_class: usize,
    pub subjects: u32,
    /// Camera views, spread evenly over ±45° of yaw.
    pub views: u32,
    /// Sequence length range (inclusive).
    pub frames: [usize; 2],
    /// Standard deviation of joint jitter, metres.
    pub noise: f32,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            layout: "ntu25".into(),
            classes: vec![],
            samples_per_class: 18,
            subjects: 6,
            views: 3,
            frames: [48, 96],
            noise: 0.01,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Pelvis,
    Spine,
    Chest,
    Neck,
    Head,
    Nose,
    Eye,
    Ear,
    Mouth,
    Shoulder,
    Elbow,
    Wrist,
    Hand,
    HandTip,
    Thumb,
    Finger,
    Hip,
    Knee,
    Ankle,
    Heel,
    Toe,
}

fn role_of(name: &str) -> Option<Role> {
    let n = name.to_ascii_lowercase();
    let has = |k: &str| n.contains(k);
    Some(
        if has("hip_center") || has("pelvis") || has("spine_base") || has("mid_hip") || has("root")
        {
            Role::Pelvis
        } else if has("spine_shoulder") || has("shoulder_center") || has("chest") || has("thorax") {
            Role::Chest
        } else if has("spine") || has("torso") || has("belly") {
            Role::Spine
        } else if has("heel") {
            Role::Heel
        } else if has("toe") || has("foot") {
            Role::Toe
        } else if has("ankle") {
            Role::Ankle
        } else if has("knee") {
            Role::Knee
        } else if has("hip") {
            Role::Hip
        } else if has("neck") {
            Role::Neck
        } else if has("nose") {
            Role::Nose
        } else if has("eye") {
            Role::Eye
        } else if has("ear") {
            Role::Ear
        } else if has("mouth") || has("lip") {
            Role::Mouth
        } else if has("head") {
            Role::Head
        } else if has("shoulder") {
            Role::Shoulder
        } else if has("elbow") {
            Role::Elbow
        } else if has("wrist") {
            Role::Wrist
        } else if has("thumb") {
            Role::Thumb
        } else if has("tip") {
            Role::HandTip
        } else if has("index") || has("pinky") || has("finger") || has("middle") || has("ring") {
            Role::Finger
        } else if has("hand") || has("palm") {
            Role::Hand
        } else {
            return None;
        },
    )
}

/// Template position (x = the body's left, y = up, z = forward; feet at y = 0) for side `s`
/// (+1 left, -1 right, 0 middle).
fn template(role: Role, s: f32) -> [f32; 3] {
    match role {
        Role::Pelvis => [0.0, 0.95, 0.0],
        Role::Spine => [0.0, 1.2, 0.0],
        Role::Chest => [0.0, 1.42, 0.0],
        Role::Neck => [0.0, 1.5, 0.0],
        // A little forward of the neck's axis, as a head centre is: a head turn then moves it.
        Role::Head => [0.0, 1.65, 0.03],
        Role::Nose => [0.0, 1.62, 0.1],
        Role::Eye => [0.035 * s, 1.66, 0.08],
        Role::Ear => [0.075 * s, 1.63, 0.0],
        Role::Mouth => [0.025 * s, 1.57, 0.08],
        Role::Shoulder => [0.19 * s, 1.42, 0.0],
        Role::Elbow => [0.21 * s, 1.14, 0.0],
        Role::Wrist => [0.22 * s, 0.89, 0.02],
        Role::Hand => [0.22 * s, 0.81, 0.03],
        Role::HandTip => [0.22 * s, 0.73, 0.04],
        Role::Thumb => [0.19 * s, 0.81, 0.07],
        Role::Finger => [0.23 * s, 0.75, 0.04],
        Role::Hip => [0.1 * s, 0.93, 0.0],
        Role::Knee => [0.1 * s, 0.5, 0.02],
        Role::Ankle => [0.1 * s, 0.08, 0.0],
        Role::Heel => [0.1 * s, 0.03, -0.05],
        Role::Toe => [0.1 * s, 0.02, 0.13],
    }
}

/// Limb segments that motions rotate. `side` 0 = left, 1 = right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Forearm(usize),
    Arm(usize),
    Shin(usize),
    Leg(usize),
    Head,
    Upper,
}

fn segments_of(role: Role, side: usize) -> Vec<Segment> {
    use Role::*;
    let mut v = Vec::new();
    match role {
        Wrist | Hand | HandTip | Thumb | Finger => {
            v.extend([Segment::Forearm(side), Segment::Arm(side)]);
        }
        Elbow => v.push(Segment::Arm(side)),
        Ankle | Heel | Toe => v.extend([Segment::Shin(side), Segment::Leg(side)]),
        Knee => v.push(Segment::Leg(side)),
        Head | Nose | Eye | Ear | Mouth => v.push(Segment::Head),
        _ => {}
    }
    if !matches!(role, Pelvis | Hip | Knee | Ankle | Heel | Toe) {
        v.push(Segment::Upper);
    }
    v
}

/// Anchor points (pivots and the ground reference) that travel with the body.
const ANCHORS: &[(Role, f32)] = &[
    (Role::Shoulder, 1.0),
    (Role::Shoulder, -1.0),
    (Role::Elbow, 1.0),
    (Role::Elbow, -1.0),
    (Role::Hip, 1.0),
    (Role::Hip, -1.0),
    (Role::Knee, 1.0),
    (Role::Knee, -1.0),
    (Role::Neck, 0.0),
    (Role::Pelvis, 0.0),
    (Role::Ankle, 1.0),
    (Role::Ankle, -1.0),
];

/// A layout resolved into a point set: the layout's joints followed by the anchors.
#[derive(Debug, Clone)]
struct Body {
    joints: usize,
    /// Rest position of every point on the template body.
    rest: Vec<[f32; 3]>,
    /// Segments each point belongs to.
    member: Vec<Vec<Segment>>,
    /// Which side each point scales with for arm / leg length: (is_arm, is_leg, side).
    limb: Vec<(bool, bool, usize)>,
}

fn side_of(layout: &Layout, j: usize) -> f32 {
    if layout.left.contains(&j) {
        return 1.0;
    }
    if layout.right.contains(&j) {
        return -1.0;
    }
    let n = layout.joints[j].to_ascii_lowercase();
    if n.contains("left") || n.starts_with("l_") || n.ends_with("_l") {
        1.0
    } else if n.contains("right") || n.starts_with("r_") || n.ends_with("_r") {
        -1.0
    } else {
        0.0
    }
}

/// A role from the layout's body parts when the name says nothing.
fn role_from_parts(layout: &Layout, j: usize) -> Option<Role> {
    let parts: Vec<&str> = layout
        .parts
        .iter()
        .filter(|(_, v)| v.contains(&j))
        .map(|(k, _)| k.as_str())
        .collect();
    let any = |k: &str| parts.iter().any(|p| p.contains(k));
    Some(if any("hand") || any("finger") {
        Role::Hand
    } else if any("foot") || any("feet") {
        Role::Toe
    } else if any("arm") {
        Role::Elbow
    } else if any("leg") {
        Role::Knee
    } else if any("head") || any("face") {
        Role::Head
    } else if any("torso") || any("trunk") {
        Role::Spine
    } else {
        return None;
    })
}

impl Body {
    fn new(layout: &Layout) -> Body {
        let v = layout.num_joints();
        let mut rest: Vec<Option<[f32; 3]>> = vec![None; v];
        let mut member = vec![Vec::new(); v];
        let mut limb = vec![(false, false, 0); v];
        for j in 0..v {
            let s = side_of(layout, j);
            let side = usize::from(s < 0.0);
            let role = role_of(&layout.joints[j]).or_else(|| role_from_parts(layout, j));
            if let Some(r) = role {
                let mut p = template(r, if s == 0.0 && needs_side(r) { 1.0 } else { s });
                // Several unnamed joints with the same role: spread them a little.
                p[2] += 0.01 * (j % 3) as f32 * f32::from(role_of(&layout.joints[j]).is_none());
                rest[j] = Some(p);
                member[j] = segments_of(r, side);
                limb[j] = (is_arm(r), is_leg(r), side);
            }
        }
        // Unknown joints: mean of placed neighbours, repeated until nothing changes.
        let mut changed = true;
        while changed {
            changed = false;
            for j in 0..v {
                if rest[j].is_some() {
                    continue;
                }
                let nb: Vec<usize> = layout
                    .edges
                    .iter()
                    .filter_map(|&(a, b)| {
                        if a == j {
                            Some(b)
                        } else if b == j {
                            Some(a)
                        } else {
                            None
                        }
                    })
                    .filter(|&k| rest[k].is_some())
                    .collect();
                if nb.is_empty() {
                    continue;
                }
                let mut p = [0.0; 3];
                for &k in &nb {
                    let q = rest[k].expect("filtered");
                    for c in 0..3 {
                        p[c] += q[c] / nb.len() as f32;
                    }
                }
                p[2] += 0.03;
                rest[j] = Some(p);
                member[j] = member[nb[0]].clone();
                limb[j] = limb[nb[0]];
                changed = true;
            }
        }
        let mut rest: Vec<[f32; 3]> = rest
            .into_iter()
            .map(|p| p.unwrap_or(template(Role::Spine, 0.0)))
            .collect();
        for &(r, s) in ANCHORS {
            let side = usize::from(s < 0.0);
            rest.push(template(r, s));
            member.push(segments_of(r, side));
            limb.push((is_arm(r), is_leg(r), side));
        }
        Body {
            joints: v,
            rest,
            member,
            limb,
        }
    }

    fn anchor(&self, role: Role, s: f32) -> usize {
        self.joints
            + ANCHORS
                .iter()
                .position(|&(r, a)| r == role && a == s)
                .expect("anchor exists")
    }
}

fn needs_side(r: Role) -> bool {
    !matches!(
        r,
        Role::Pelvis | Role::Spine | Role::Chest | Role::Neck | Role::Head | Role::Nose
    )
}

fn is_arm(r: Role) -> bool {
    matches!(
        r,
        Role::Elbow | Role::Wrist | Role::Hand | Role::HandTip | Role::Thumb | Role::Finger
    )
}

fn is_leg(r: Role) -> bool {
    matches!(r, Role::Knee | Role::Ankle | Role::Heel | Role::Toe)
}

type Mat3 = [[f32; 3]; 3];

fn rx(a: f32) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}
fn ry(a: f32) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}
fn rz(a: f32) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}
fn apply(m: &Mat3, p: [f32; 3]) -> [f32; 3] {
    [
        m[0][0] * p[0] + m[0][1] * p[1] + m[0][2] * p[2],
        m[1][0] * p[0] + m[1][1] * p[1] + m[1][2] * p[2],
        m[2][0] * p[0] + m[2][1] * p[1] + m[2][2] * p[2],
    ]
}
/// Limb swung forward by `a` (hanging limb -> pointing forward at a = pi/2).
fn flex(a: f32) -> Mat3 {
    rx(-a)
}
/// Upward segment (upper body, head) tipped forward by `a`.
fn lean(a: f32) -> Mat3 {
    rx(a)
}
/// Limb of side `s` (+1 left, -1 right) raised sideways by `a`.
fn abd(s: f32, a: f32) -> Mat3 {
    rz(s * a)
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}
/// 0 -> 1 -> 0 over the clip with plateaus: raise, hold, lower.
fn envelope(t: f32) -> f32 {
    smoothstep(0.0, 0.25, t) * (1.0 - smoothstep(0.75, 1.0, t))
}

/// The pose at one instant: rotation per segment, body yaw, translation, and whether the
/// feet are pinned to the ground.
struct Pose {
    seg: BTreeMap<Segment, Mat3>,
    yaw: f32,
    offset: [f32; 3],
    grounded: bool,
}

impl Pose {
    fn new() -> Pose {
        Pose {
            seg: BTreeMap::new(),
            yaw: 0.0,
            offset: [0.0; 3],
            grounded: true,
        }
    }
    fn set(&mut self, s: Segment, m: Mat3) {
        self.seg.insert(s, m);
    }
}

/// Per-sample style: amplitude, cycles over the clip, phase, and the subject's arm length and
/// shoulder width scales (so a clap can bring the hands exactly to the midline).
struct Style {
    amp: f32,
    cycles: f32,
    phase: f32,
    arm: f32,
    width: f32,
}

/// The yaw (about the vertical through the shoulder) that puts the hand of side `sd` at
/// `x = sd * gap` (the body's midline plus a gap), for an arm posed by `arm` and `forearm`;
/// computed on the subject's rest geometry before height scaling, which does not change it.
fn yaw_to_midline(st: &Style, sd: f32, arm: &Mat3, forearm: &Mat3, gap: f32) -> f32 {
    let sh = template(Role::Shoulder, sd);
    let el = template(Role::Elbow, sd);
    let ha = template(Role::Hand, sd);
    let scale = |v: [f32; 3]| [v[0] * st.arm * st.width, v[1] * st.arm, v[2] * st.arm];
    let upper = scale([el[0] - sh[0], el[1] - sh[1], el[2] - sh[2]]);
    let lower = apply(
        forearm,
        scale([ha[0] - el[0], ha[1] - el[1], ha[2] - el[2]]),
    );
    let h = apply(
        arm,
        [
            upper[0] + lower[0],
            upper[1] + lower[1],
            upper[2] + lower[2],
        ],
    );
    // Solve cos(y) h.x + sin(y) h.z = target for y, taking the smaller turn.
    let target = sd * gap - sh[0] * st.width;
    let r = h[0].hypot(h[2]).max(1e-6);
    let alpha = h[2].atan2(h[0]);
    let beta = (target / r).clamp(-1.0, 1.0).acos();
    let wrap = |y: f32| {
        (y + std::f32::consts::PI).rem_euclid(std::f32::consts::TAU) - std::f32::consts::PI
    };
    let (y0, y1) = (wrap(alpha - beta), wrap(alpha + beta));
    if y0.abs() <= y1.abs() {
        y0
    } else {
        y1
    }
}

const L: usize = 0;
const R: usize = 1;
const SL: f32 = 1.0;
const SR: f32 = -1.0;

fn pose_for(motion: &str, t: f32, st: &Style) -> Pose {
    use std::f32::consts::{FRAC_PI_2, PI, TAU};
    let a = st.amp;
    let w = TAU * st.cycles * t + st.phase;
    let env = envelope(t);
    let pulse = (0.5 - 0.5 * w.cos()) * env; // 0..1 repetitions inside the envelope
    let mut p = Pose::new();
    match motion {
        "wave" => {
            p.set(Segment::Arm(R), abd(SR, (1.55 * a).min(2.0) * env));
            p.set(
                Segment::Forearm(R),
                abd(SR, (1.0 + 0.45 * a * w.sin()) * env),
            );
        }
        "punch" => {
            p.set(
                Segment::Arm(R),
                matmul3(&ry(0.15), &flex(0.9 + 0.6 * pulse * a.min(1.1))),
            );
            p.set(Segment::Forearm(R), flex(1.9 * (1.0 - pulse)));
            p.set(Segment::Arm(L), flex(0.9));
            p.set(Segment::Forearm(L), flex(1.8));
            // The trunk turns left, so the right shoulder goes forward with the fist.
            p.set(Segment::Upper, ry(0.3 * pulse));
        }
        "kick" => {
            p.set(Segment::Leg(R), flex(1.2 * a * pulse));
            p.set(
                Segment::Shin(R),
                rx(1.2 * (pulse * (1.0 - pulse) * 4.0).min(1.0) * 0.8),
            );
            p.set(Segment::Upper, lean(-0.15 * pulse));
            p.set(Segment::Arm(L), abd(SL, 0.4 * pulse));
            p.set(Segment::Arm(R), abd(SR, 0.4 * pulse));
        }
        "squat" => {
            let u = pulse * a.min(1.15);
            for (s, sd) in [(L, SL), (R, SR)] {
                p.set(Segment::Leg(s), matmul3(&abd(sd, 0.15 * u), &flex(1.3 * u)));
                p.set(Segment::Shin(s), rx(2.3 * u));
                // Relative to the trunk, which leans forward: the arms end about level.
                p.set(Segment::Arm(s), flex(1.85 * u));
            }
            p.set(Segment::Upper, lean(0.45 * u));
        }
        "jump" => {
            // Crouch first (c < 0), then the jump (c > 0).
            let c = -w.sin() * env;
            let crouch = (-c).max(0.0);
            let air = c.max(0.0);
            for s in [L, R] {
                p.set(Segment::Leg(s), flex(0.8 * crouch));
                p.set(Segment::Shin(s), rx(1.6 * crouch));
                p.set(Segment::Arm(s), flex(2.6 * air - 0.5 * crouch));
            }
            p.set(Segment::Upper, lean(0.3 * crouch));
            // Feet stay on the ground through the crouch (the hips sink); the flight lifts the
            // whole body off the ground.
            p.offset[1] = 0.35 * a * air;
        }
        "turn" => {
            p.yaw = PI * (0.5 + 0.4 * a.min(1.25)) * smoothstep(0.1, 0.9, t);
            let step = (TAU * 2.0 * st.cycles * t).sin() * env;
            p.set(Segment::Leg(L), flex(0.4 * step.max(0.0)));
            p.set(Segment::Shin(L), rx(0.8 * step.max(0.0)));
            p.set(Segment::Leg(R), flex(0.4 * (-step).max(0.0)));
            p.set(Segment::Shin(R), rx(0.8 * (-step).max(0.0)));
        }
        "bow" => {
            let u = (PI * t).sin().powi(2);
            p.set(Segment::Upper, lean(1.0 * a.min(1.3) * u));
            p.set(Segment::Head, rx(0.3 * u));
        }
        "clap" => {
            // Upper arms forward and down, elbows a little bent: the hands at chest height.
            // Closed: each arm turned in just far enough for its hand to reach the midline;
            // open: turned a little outwards, the hands about half a metre apart.
            let open = 0.5 + 0.5 * w.cos();
            for (s, sd) in [(L, SL), (R, SR)] {
                let arm = flex(1.1 * env);
                let forearm = flex(0.5 * env);
                let shut = yaw_to_midline(st, sd, &flex(1.1), &flex(0.5), 0.025);
                let wide = sd * 0.12 * a.min(1.2);
                let yaw = (shut + (wide - shut) * open) * env;
                p.set(Segment::Arm(s), matmul3(&ry(yaw), &arm));
                p.set(Segment::Forearm(s), forearm);
            }
        }
        "raise_arms" => {
            p.set(Segment::Arm(L), abd(SL, 2.9 * env));
            p.set(Segment::Arm(R), abd(SR, 2.9 * env));
        }
        "side_step" => {
            let x = (PI * st.cycles.round().max(1.0) * t).sin() * env;
            p.offset[0] = 0.3 * a * x;
            let spread = (TAU * st.cycles * t).sin().abs() * env;
            p.set(Segment::Leg(L), abd(SL, 0.35 * spread));
            p.set(Segment::Leg(R), abd(SR, 0.35 * spread));
        }
        "nod" => {
            // Down well forward, then a little back past upright.
            p.set(Segment::Head, lean(a * (0.85 * pulse - 0.15 * env)));
        }
        "shake_head" => {
            // The turn carries a slight roll toward the side the face turns to, as people do.
            let turn = 0.7 * a * w.sin() * env;
            p.set(Segment::Head, matmul3(&ry(turn), &rz(-0.35 * turn)));
        }
        "march" => {
            let sw = w.sin() * env;
            p.set(Segment::Leg(L), flex(1.1 * a * sw.max(0.0)));
            p.set(Segment::Shin(L), rx(1.5 * sw.max(0.0)));
            p.set(Segment::Leg(R), flex(1.1 * a * (-sw).max(0.0)));
            p.set(Segment::Shin(R), rx(1.5 * (-sw).max(0.0)));
            p.set(Segment::Arm(L), flex(-0.6 * sw));
            p.set(Segment::Arm(R), flex(0.6 * sw));
            p.set(Segment::Forearm(L), flex(0.8 * env));
            p.set(Segment::Forearm(R), flex(0.8 * env));
        }
        "arm_circles" => {
            // Arms held out sideways; each hand circles on a cone about the arm's line: up/down
            // by raising/lowering the arm, forward/back by turning it about the vertical.
            let r = 0.35 * a.min(1.2) * env;
            for (s, sd) in [(L, SL), (R, SR)] {
                let circle = matmul3(
                    &ry(-sd * r * w.cos()),
                    &abd(sd, FRAC_PI_2 * env + r * w.sin()),
                );
                p.set(Segment::Arm(s), circle);
            }
        }
        "point" => {
            p.set(Segment::Arm(R), matmul3(&ry(-0.2 * a), &flex(1.55 * env)));
            p.set(Segment::Forearm(R), flex(0.1 * env));
        }
        "side_bend" => {
            p.set(Segment::Upper, rz(0.45 * a * w.sin() * env));
        }
        "throw" => {
            // Wind-up (arm up and back) in the first half, throw forward and down after.
            let wind = smoothstep(0.1, 0.5, t);
            let release = smoothstep(0.5, 0.7, t);
            let back = 1.0 - smoothstep(0.75, 1.0, t);
            let angle = (2.9 * wind - 1.9 * release) * back;
            p.set(Segment::Arm(R), flex(angle * a.min(1.1)));
            p.set(Segment::Forearm(R), flex(1.2 * wind * (1.0 - release)));
            // Trunk turns right (right shoulder back) in the wind-up, left at the release.
            p.set(Segment::Upper, ry(-0.4 * (wind - 1.4 * release) * back));
        }
        _ => {}
    }
    p
}

/// Per-subject body proportions and style.
struct Subject {
    height: f32,
    arm: f32,
    leg: f32,
    width: f32,
    amp: f32,
    speed: f32,
}

fn subject(seed: u64, id: u32) -> Subject {
    let mut r = keyed_rng(&[seed, 0x5B1EC7, id as u64]);
    Subject {
        height: uniform(&mut r, 0.88, 1.12),
        arm: uniform(&mut r, 0.9, 1.1),
        leg: uniform(&mut r, 0.9, 1.1),
        width: uniform(&mut r, 0.9, 1.15),
        amp: uniform(&mut r, 0.8, 1.15),
        speed: uniform(&mut r, 0.8, 1.25),
    }
}

/// Base repetitions per clip of each motion (before speed variation).
fn base_cycles(motion: &str) -> f32 {
    match motion {
        "wave" | "clap" | "shake_head" => 3.5,
        "punch" | "nod" | "march" | "arm_circles" | "side_bend" => 3.0,
        "kick" | "squat" | "jump" | "side_step" => 2.0,
        _ => 1.0,
    }
}

impl Body {
    /// The rest pose of one subject: limb lengths, shoulder width and height applied.
    fn subject_rest(&self, sub: &Subject) -> Vec<[f32; 3]> {
        let mut rest = self.rest.clone();
        let shoulder = [
            template(Role::Shoulder, 1.0),
            template(Role::Shoulder, -1.0),
        ];
        let hip = [template(Role::Hip, 1.0), template(Role::Hip, -1.0)];
        for (p, &(arm, leg, side)) in rest.iter_mut().zip(&self.limb) {
            let (pivot, k) = if arm {
                (shoulder[side], sub.arm)
            } else if leg {
                (hip[side], sub.leg)
            } else {
                continue;
            };
            for c in 0..3 {
                p[c] = pivot[c] + (p[c] - pivot[c]) * k;
            }
        }
        // Legs longer or shorter: move everything so the ankles stay at their template height.
        let dy = (sub.leg - 1.0) * (hip[0][1] - template(Role::Ankle, 1.0)[1]);
        for p in rest.iter_mut() {
            p[1] += dy;
            p[0] *= sub.width;
            for c in p.iter_mut() {
                *c *= sub.height;
            }
        }
        rest
    }

    /// Forward kinematics of `pose` from the subject's rest points.
    fn pose(&self, rest: &[[f32; 3]], pose: &Pose) -> Vec<[f32; 3]> {
        let mut pts = rest.to_vec();
        // Distal segments first, each about the current position of its pivot anchor.
        let order = [
            Segment::Forearm(L),
            Segment::Forearm(R),
            Segment::Arm(L),
            Segment::Arm(R),
            Segment::Shin(L),
            Segment::Shin(R),
            Segment::Leg(L),
            Segment::Leg(R),
            Segment::Head,
            Segment::Upper,
        ];
        for seg in order {
            let Some(m) = pose.seg.get(&seg) else {
                continue;
            };
            let pivot = pts[match seg {
                Segment::Forearm(s) => self.anchor(Role::Elbow, [SL, SR][s]),
                Segment::Arm(s) => self.anchor(Role::Shoulder, [SL, SR][s]),
                Segment::Shin(s) => self.anchor(Role::Knee, [SL, SR][s]),
                Segment::Leg(s) => self.anchor(Role::Hip, [SL, SR][s]),
                Segment::Head => self.anchor(Role::Neck, 0.0),
                Segment::Upper => self.anchor(Role::Pelvis, 0.0),
            }];
            for (p, member) in pts.iter_mut().zip(&self.member) {
                if member.contains(&seg) {
                    let d = apply(m, [p[0] - pivot[0], p[1] - pivot[1], p[2] - pivot[2]]);
                    *p = [pivot[0] + d[0], pivot[1] + d[1], pivot[2] + d[2]];
                }
            }
        }
        if pose.grounded {
            // Keep the lower ankle at its rest height (squats sink, kicks stand on one leg).
            let (al, ar) = (self.anchor(Role::Ankle, SL), self.anchor(Role::Ankle, SR));
            let drop = pts[al][1].min(pts[ar][1]) - rest[al][1].min(rest[ar][1]);
            for p in pts.iter_mut() {
                p[1] -= drop;
            }
        }
        let pelvis = pts[self.anchor(Role::Pelvis, 0.0)];
        let yaw = ry(pose.yaw);
        for p in pts.iter_mut() {
            let d = apply(&yaw, [p[0] - pelvis[0], p[1], p[2] - pelvis[2]]);
            *p = [
                pelvis[0] + d[0] + pose.offset[0],
                d[1] + pose.offset[1],
                pelvis[2] + d[2] + pose.offset[2],
            ];
        }
        pts
    }
}

/// The motion names a config selects.
pub fn class_names(cfg: &SynthConfig) -> Result<Vec<String>, SynthError> {
    if cfg.classes.is_empty() {
        return Ok(MOTIONS.iter().map(|m| m.name.to_string()).collect());
    }
    for c in &cfg.classes {
        if !MOTIONS.iter().any(|m| m.name == c) {
            let all: Vec<&str> = MOTIONS.iter().map(|m| m.name).collect();
            return Err(SynthError::Config(format!(
                "unknown motion `{c}` (built-in: {})",
                all.join(", ")
            )));
        }
    }
    Ok(cfg.classes.clone())
}

/// The description of a built-in motion.
pub fn describe(name: &str) -> Option<&'static str> {
    MOTIONS
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.description)
}

/// Generates a dataset on the layout the config names.
pub fn generate(cfg: &SynthConfig) -> Result<Dataset, SynthError> {
    let layout = Layout::load(&cfg.layout)?;
    generate_with_layout(cfg, &layout)
}

/// Generates `samples_per_class` sequences per class. Sample `i` of a class is performed by
/// subject `i % subjects + 1`, seen from view `(i / subjects) % views + 1`, replication
/// `i / (subjects * views) + 1`, so every (subject, view) pair occurs before any repeats.
pub fn generate_with_layout(cfg: &SynthConfig, layout: &Layout) -> Result<Dataset, SynthError> {
    let classes = class_names(cfg)?;
    if cfg.subjects == 0 || cfg.views == 0 || cfg.samples_per_class == 0 {
        return Err(SynthError::Config(
            "samples_per_class, subjects and views must be at least 1".into(),
        ));
    }
    let [f0, f1] = cfg.frames;
    if f0 < 2 || f1 < f0 {
        return Err(SynthError::Config(format!(
            "frames must be [min, max] with 2 <= min <= max, got [{f0}, {f1}]"
        )));
    }
    if !(cfg.noise >= 0.0 && cfg.noise.is_finite()) {
        return Err(SynthError::Config(format!(
            "noise must be >= 0, got {}",
            cfg.noise
        )));
    }
    let body = Body::new(layout);
    let jobs: Vec<(usize, usize)> = (0..classes.len())
        .flat_map(|c| (0..cfg.samples_per_class).map(move |i| (c, i)))
        .collect();
    let samples = jobs
        .par_iter()
        .map(|&(c, i)| one_sample(cfg, &body, layout, &classes[c], c, i))
        .collect();
    Ok(Dataset {
        name: "synth".into(),
        layout: layout.name.clone(),
        classes,
        samples,
    })
}

fn one_sample(
    cfg: &SynthConfig,
    body: &Body,
    layout: &Layout,
    motion: &str,
    label: usize,
    i: usize,
) -> Sample {
    use std::f32::consts::FRAC_PI_4;
    let subj = (i as u32 % cfg.subjects) + 1;
    let view = (i as u32 / cfg.subjects) % cfg.views + 1;
    let rep = i as u32 / (cfg.subjects * cfg.views) + 1;
    let sub = subject(cfg.seed, subj);
    let mut rng = keyed_rng(&[cfg.seed, 0x5A3B1E, label as u64, i as u64]);
    let frames = rng.random_range(cfg.frames[0]..=cfg.frames[1]);
    let style = Style {
        amp: sub.amp * uniform(&mut rng, 0.9, 1.1),
        cycles: base_cycles(motion) * sub.speed * uniform(&mut rng, 0.9, 1.1),
        phase: uniform(&mut rng, -0.4, 0.4),
        arm: sub.arm,
        width: sub.width,
    };
    let yaw = if cfg.views == 1 {
        0.0
    } else {
        -FRAC_PI_4 + 2.0 * FRAC_PI_4 * (view - 1) as f32 / (cfg.views - 1) as f32
    } + uniform(&mut rng, -0.08, 0.08);
    let cam = matmul3(&rx(uniform(&mut rng, -0.05, 0.1)), &ry(yaw));
    let depth = uniform(&mut rng, 2.6, 3.4);
    let shift = [uniform(&mut rng, -0.3, 0.3), -uniform(&mut rng, 0.8, 1.1)];
    let rest = body.subject_rest(&sub);
    let v = layout.num_joints();
    let mut sk = Skeleton::zeros(1, frames, v, 3);
    for t in 0..frames {
        let tt = t as f32 / (frames - 1) as f32;
        let pts = body.pose(&rest, &pose_for(motion, tt, &style));
        for (j, p) in pts.iter().take(v).enumerate() {
            let q = apply(&cam, *p);
            // Camera coordinates: x right, y up, z away from the camera the body faces.
            let out = [
                q[0] + shift[0] + cfg.noise * normal(&mut rng),
                q[1] + shift[1] + cfg.noise * normal(&mut rng),
                depth - q[2] + cfg.noise * normal(&mut rng),
            ];
            for (c, x) in out.iter().enumerate() {
                sk.set(0, t, j, c, *x);
            }
        }
    }
    let mut extra = BTreeMap::new();
    extra.insert("motion".to_string(), motion.to_string());
    Sample {
        meta: SampleMeta {
            name: format!("synth_a{:02}_s{subj:02}_v{view:02}_r{rep:02}", label + 1),
            label: Some(label),
            subject: Some(subj),
            view: Some(view),
            setup: None,
            replication: Some(rep),
            extra,
        },
        skeleton: sk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinect_roles_and_rest_pose_are_plausible() {
        let l = Layout::builtin("ntu25").unwrap();
        let b = Body::new(&l);
        let at = |n: &str| b.rest[l.joint_index(n).unwrap()];
        assert!(at("head")[1] > at("neck")[1] && at("neck")[1] > at("spine_mid")[1]);
        assert!(at("spine_mid")[1] > at("spine_base")[1] && at("left_knee")[1] < at("left_hip")[1]);
        assert!(at("left_hand")[0] > 0.0 && at("right_hand")[0] < 0.0);
        assert!(at("left_foot")[1] < 0.1);
        // Bones have human lengths (5 cm .. 50 cm).
        for &(a, p) in &l.edges {
            let d: f32 = (0..3)
                .map(|c| (b.rest[a][c] - b.rest[p][c]).powi(2))
                .sum::<f32>()
                .sqrt();
            assert!(
                (0.02..0.5).contains(&d),
                "{} - {}: {d}",
                l.joints[a],
                l.joints[p]
            );
        }
    }

    #[test]
    fn layouts_with_unknown_joint_names_still_generate() {
        let text = "name='odd'\ncenter='b'\njoints=['a','b','c','left_knee']\nedges=[['a','b'],['c','b'],['left_knee','c']]\n";
        let l = Layout::from_toml_str(text, "odd").unwrap();
        let cfg = SynthConfig {
            samples_per_class: 1,
            subjects: 1,
            views: 1,
            frames: [8, 8],
            ..SynthConfig::default()
        };
        let ds = generate_with_layout(&cfg, &l).unwrap();
        assert!(ds
            .samples
            .iter()
            .all(|s| s.skeleton.joints == 4 && s.skeleton.data.iter().all(|x| x.is_finite())));
    }

    #[test]
    fn punch_moves_the_right_hand_forward() {
        let l = Layout::builtin("ntu25").unwrap();
        let b = Body::new(&l);
        let st = Style {
            amp: 1.0,
            cycles: 1.0,
            phase: 0.0,
            arm: 1.0,
            width: 1.0,
        };
        let rest = b.rest.clone();
        let hand = l.joint_index("right_hand").unwrap();
        let p = b.pose(&rest, &pose_for("punch", 0.5, &st));
        assert!(
            p[hand][2] > rest[hand][2] + 0.4,
            "{:?} vs {:?}",
            p[hand],
            rest[hand]
        );
        let head = l.joint_index("head").unwrap();
        let p = b.pose(&rest, &pose_for("bow", 0.5, &st));
        assert!(
            p[head][2] > rest[head][2] + 0.3,
            "bowing moves the head forward"
        );
        let p = b.pose(&rest, &pose_for("raise_arms", 0.5, &st));
        assert!(p[hand][1] > p[head][1], "hands above head");
    }

    /// Joint trajectories of one motion over `n` instants, on a subject of the given build.
    fn track(motion: &str, sub: &Subject, cycles: f32, n: usize) -> (Layout, Vec<Vec<[f32; 3]>>) {
        let l = Layout::builtin("ntu25").unwrap();
        let b = Body::new(&l);
        let st = Style {
            amp: sub.amp,
            cycles,
            phase: 0.0,
            arm: sub.arm,
            width: sub.width,
        };
        let rest = b.subject_rest(sub);
        let seq = (0..n)
            .map(|i| b.pose(&rest, &pose_for(motion, i as f32 / (n - 1) as f32, &st)))
            .collect();
        (l, seq)
    }

    fn plain(amp: f32) -> Subject {
        Subject {
            height: 1.0,
            arm: 1.0,
            leg: 1.0,
            width: 1.0,
            amp,
            speed: 1.0,
        }
    }

    fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
        (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f32>().sqrt()
    }

    #[test]
    fn head_motions_move_the_head_joint() {
        for amp in [0.72, 1.0] {
            let (l, seq) = track("shake_head", &plain(amp), 3.5, 97);
            let h = l.joint_index("head").unwrap();
            let xs: Vec<f32> = seq.iter().map(|p| p[h][0]).collect();
            let (lo, hi) = (
                xs.iter().cloned().fold(9.0, f32::min),
                xs.iter().cloned().fold(-9.0, f32::max),
            );
            assert!(
                hi - seq[0][h][0] > 0.03 && seq[0][h][0] - lo > 0.03,
                "shake_head: {lo}..{hi}"
            );
            let (_, seq) = track("nod", &plain(amp), 3.0, 97);
            let far = seq
                .iter()
                .map(|p| dist(p[h], seq[0][h]))
                .fold(0.0, f32::max);
            assert!(far > 0.1 * amp, "nod moves the head only {far}");
        }
    }

    #[test]
    fn clap_hands_open_wide_and_meet_at_the_midline() {
        // Extreme builds: narrow shoulders with long arms, wide shoulders with short arms.
        for (arm, width, amp) in [(1.1, 0.9, 0.72), (0.9, 1.15, 1.27), (1.0, 1.0, 1.0)] {
            let sub = Subject {
                arm,
                width,
                ..plain(amp)
            };
            let (l, seq) = track("clap", &sub, 3.5, 193);
            let (lh, rh) = (
                l.joint_index("left_hand").unwrap(),
                l.joint_index("right_hand").unwrap(),
            );
            let chest = l.joint_index("spine_shoulder").unwrap();
            let mut widest = 0.0f32;
            let mut closest = (9.0f32, 0);
            for (t, p) in seq.iter().enumerate() {
                assert!(
                    p[lh][0] > -0.02 && p[rh][0] < 0.02,
                    "hands cross: {:?} {:?}",
                    p[lh],
                    p[rh]
                );
                widest = widest.max(p[lh][0] - p[rh][0]);
                if p[lh][2] > 0.3 && dist(p[lh], p[rh]) < closest.0 {
                    closest = (dist(p[lh], p[rh]), t);
                }
            }
            assert!(
                widest > 0.3 && closest.0 < 0.08,
                "open {widest}, closed {closest:?}"
            );
            // They meet in front of the chest.
            let p = &seq[closest.1];
            assert!(
                (p[lh][1] - p[chest][1]).abs() < 0.2 && p[lh][2] > 0.4,
                "{:?}",
                p[lh]
            );
        }
    }

    #[test]
    fn punch_and_throw_turn_the_trunk_with_the_arm() {
        let (l, seq) = track("punch", &plain(1.0), 1.0, 97);
        let (sh, hand) = (
            l.joint_index("right_shoulder").unwrap(),
            l.joint_index("right_hand").unwrap(),
        );
        // Mid-clip the fist is fully out (pulse = 1).
        // From the guard (t = 0) the fist goes well forward.
        assert!(seq[48][hand][2] > seq[0][hand][2] + 0.2);
        assert!(
            seq[48][sh][2] > seq[0][sh][2] + 0.03,
            "{:?} vs {:?}",
            seq[48][sh],
            seq[0][sh]
        );
        let (_, seq) = track("throw", &plain(1.0), 1.0, 101);
        // t = 0.5: full wind-up, right shoulder back; t = 0.72: release, right shoulder forward.
        assert!(
            seq[50][sh][2] < seq[0][sh][2] - 0.03,
            "wind-up {:?}",
            seq[50][sh]
        );
        assert!(
            seq[72][sh][2] > seq[0][sh][2] + 0.01,
            "release {:?}",
            seq[72][sh]
        );
    }

    #[test]
    fn arm_circles_trace_loops() {
        let (l, seq) = track("arm_circles", &plain(1.0), 3.0, 301);
        for name in ["left_hand", "right_hand"] {
            let h = l.joint_index(name).unwrap();
            // One full cycle in the middle of the clip (envelope at 1): t in [1/3, 2/3].
            let ring: Vec<[f32; 3]> = seq[100..=200].iter().map(|p| p[h]).collect();
            let ext = |c: usize| {
                let v = ring.iter().map(|p| p[c]);
                v.clone().fold(-9.0, f32::max) - v.fold(9.0, f32::min)
            };
            assert!(
                ext(1) > 0.2 && ext(2) > 0.2,
                "{name}: y {} z {}",
                ext(1),
                ext(2)
            );
            // Enclosed area in the sagittal (y, z) plane: an arc up and down encloses ~none.
            let area: f32 = ring
                .windows(2)
                .map(|w| w[0][2] * w[1][1] - w[1][2] * w[0][1])
                .sum::<f32>()
                .abs()
                / 2.0;
            assert!(area > 0.03, "{name}: area {area}");
            // Arms out to the side throughout the cycle.
            assert!(ring.iter().all(|p| p[0].abs() > 0.5), "{name} out sideways");
        }
    }

    #[test]
    fn jump_crouches_on_the_ground_then_leaves_it() {
        let (l, seq) = track("jump", &plain(1.0), 2.0, 201);
        let (ank, pel) = (
            l.joint_index("left_ankle").unwrap(),
            l.joint_index("spine_base").unwrap(),
        );
        let (a0, p0) = (seq[0][ank][1], seq[0][pel][1]);
        let mut crouched = false;
        let mut flew = false;
        for p in &seq {
            if p[pel][1] < p0 - 0.15 {
                crouched = true;
                assert!(
                    (p[ank][1] - a0).abs() < 0.01,
                    "feet on the ground in the crouch"
                );
            }
            if p[ank][1] > a0 + 0.2 {
                flew = true;
                assert!(p[pel][1] > p0 + 0.2, "whole body lifts");
            }
        }
        assert!(crouched && flew);
    }
}
