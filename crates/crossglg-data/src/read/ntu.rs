//! NTU RGB+D 60/120 `.skeleton` files (Kinect v2, 25 joints).
//!
//! The text format, one value group per line (CRLF in the original release):
//! ```text
//! <frame count>
//! per frame:  <body count>
//!   per body: <bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence
//!              handRightState isRestricted leanX leanY trackingState>
//!             <joint count>
//!             per joint: <x y z depthX depthY colorX colorY orientationW orientationX
//!                         orientationY orientationZ trackingState>
//! ```
//! [`read_ntu_recording`] keeps every field; [`read_ntu`] turns a file into a [`Sample`] with
//! xyz per tracked body.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{
    list_files, parse_count, parse_f32, read_bytes, read_files_parallel, show, split_n, stem,
    tokens, DirOptions, Lines, ReadError, ReadReport, MAX_BODIES_PER_FRAME, MAX_FRAMES, MAX_JOINTS,
    MAX_SAMPLE_VALUES,
};
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

/// NTU RGB+D 120 class names (A001..A120, label = A - 1), from the dataset's official list.
pub const NTU120_CLASSES: [&str; 120] = [
    "drink water",
    "eat meal/snack",
    "brushing teeth",
    "brushing hair",
    "drop",
    "pickup",
    "throw",
    "sitting down",
    "standing up (from sitting position)",
    "clapping",
    "reading",
    "writing",
    "tear up paper",
    "wear jacket",
    "take off jacket",
    "wear a shoe",
    "take off a shoe",
    "wear on glasses",
    "take off glasses",
    "put on a hat/cap",
    "take off a hat/cap",
    "cheer up",
    "hand waving",
    "kicking something",
    "reach into pocket",
    "hopping (one foot jumping)",
    "jump up",
    "make a phone call/answer phone",
    "playing with phone/tablet",
    "typing on a keyboard",
    "pointing to something with finger",
    "taking a selfie",
    "check time (from watch)",
    "rub two hands together",
    "nod head/bow",
    "shake head",
    "wipe face",
    "salute",
    "put the palms together",
    "cross hands in front (say stop)",
    "sneeze/cough",
    "staggering",
    "falling",
    "touch head (headache)",
    "touch chest (stomachache/heart pain)",
    "touch back (backache)",
    "touch neck (neckache)",
    "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person",
    "kicking other person",
    "pushing other person",
    "pat on back of other person",
    "point finger at the other person",
    "hugging other person",
    "giving something to other person",
    "touch other person's pocket",
    "handshaking",
    "walking towards each other",
    "walking apart from each other",
    "put on headphone",
    "take off headphone",
    "shoot at the basket",
    "bounce ball",
    "tennis bat swing",
    "juggling table tennis balls",
    "hush (quite)",
    "flick hair",
    "thumb up",
    "thumb down",
    "make ok sign",
    "make victory sign",
    "staple book",
    "counting money",
    "cutting nails",
    "cutting paper (using scissors)",
    "snapping fingers",
    "open bottle",
    "sniff (smell)",
    "squat down",
    "toss a coin",
    "fold paper",
    "ball up paper",
    "play magic cube",
    "apply cream on face",
    "apply cream on hand back",
    "put on bag",
    "take off bag",
    "put something into a bag",
    "take something out of a bag",
    "open a box",
    "move heavy objects",
    "shake fist",
    "throw up cap/hat",
    "hands up (both hands)",
    "cross arms",
    "arm circles",
    "arm swings",
    "running on the spot",
    "butt kicks (kick backward)",
    "cross toe touch",
    "side kick",
    "yawn",
    "stretch oneself",
    "blow nose",
    "hit other person with something",
    "wield knife towards other person",
    "knock over other person (hit with body)",
    "grab other person’s stuff",
    "shoot at other person with a gun",
    "step on foot",
    "high-five",
    "cheers and drink",
    "carry something with other person",
    "take a photo of other person",
    "follow other person",
    "whisper in other person’s ear",
    "exchange things with other person",
    "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
];

/// One joint line, every field as written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NtuJoint {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub depth_x: f32,
    pub depth_y: f32,
    pub color_x: f32,
    pub color_y: f32,
    pub orientation_w: f32,
    pub orientation_x: f32,
    pub orientation_y: f32,
    pub orientation_z: f32,
    /// 0 not tracked, 1 inferred, 2 tracked.
    pub tracking_state: u8,
}

/// The body info line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NtuBodyInfo {
    pub body_id: u64,
    pub clipped_edges: u32,
    pub hand_left_confidence: u8,
    pub hand_left_state: u8,
    pub hand_right_confidence: u8,
    pub hand_right_state: u8,
    pub is_restricted: u8,
    pub lean_x: f32,
    pub lean_y: f32,
    pub tracking_state: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NtuBody {
    pub info: NtuBodyInfo,
    pub joints: Vec<NtuJoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NtuFrame {
    pub bodies: Vec<NtuBody>,
}

/// A whole `.skeleton` file, lossless.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NtuRecording {
    pub name: String,
    pub frames: Vec<NtuFrame>,
    /// Joints per body (25 for Kinect v2); the same for every body of the file.
    pub joints: usize,
}

impl NtuRecording {
    /// Distinct body ids in order of first appearance, with the number of frames each is in.
    pub fn body_tracks(&self) -> Vec<(u64, usize)> {
        // indexed by id: a file with many distinct ids must not cost a search per body
        let mut index: std::collections::HashMap<u64, usize> = Default::default();
        let mut tracks: Vec<(u64, usize)> = Vec::new();
        for frame in &self.frames {
            for body in &frame.bodies {
                let id = body.info.body_id;
                match index.get(&id) {
                    Some(&i) => tracks[i].1 += 1,
                    None => {
                        index.insert(id, tracks.len());
                        tracks.push((id, 1));
                    }
                }
            }
        }
        tracks
    }

    /// xyz as `[M, T, V, 3]`. Bodies are followed by id; the `max_bodies` seen in most frames
    /// are kept (ties: first seen first), in order of first appearance. Frames where a kept
    /// body is absent stay zero. A file with no body at all gives one all-zero person.
    pub fn to_skeleton(&self, max_bodies: usize) -> Skeleton {
        let tracks = self.body_tracks();
        let mut ranked: Vec<usize> = (0..tracks.len()).collect();
        ranked.sort_by_key(|&i| (std::cmp::Reverse(tracks[i].1), i));
        ranked.truncate(max_bodies.max(1));
        ranked.sort_unstable();
        let kept: Vec<u64> = ranked.iter().map(|&i| tracks[i].0).collect();
        let persons = kept.len().max(1);
        let mut sk = Skeleton::zeros(persons, self.frames.len(), self.joints, 3);
        for (t, frame) in self.frames.iter().enumerate() {
            for body in &frame.bodies {
                if let Some(m) = kept.iter().position(|&id| id == body.info.body_id) {
                    for (v, j) in body.joints.iter().enumerate() {
                        let i = sk.index(m, t, v, 0);
                        sk.data[i..i + 3].copy_from_slice(&[j.x, j.y, j.z]);
                    }
                }
            }
        }
        sk
    }
}

/// Parses `SsssCcccPpppRrrrAaaa` into metadata (label = A - 1, view = camera). `None` if the
/// name has another shape.
pub fn parse_ntu_name(name: &str) -> Option<SampleMeta> {
    let b = name.as_bytes();
    if b.len() != 20 {
        return None;
    }
    let mut nums = [0u32; 5];
    for (k, (tag, n)) in [b'S', b'C', b'P', b'R', b'A']
        .iter()
        .zip(&mut nums)
        .enumerate()
    {
        let group = &b[k * 4..k * 4 + 4];
        if group[0] != *tag || !group[1..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        *n = group[1..]
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'));
    }
    let [setup, camera, subject, replication, action] = nums;
    if action == 0 {
        return None;
    }
    Some(SampleMeta {
        name: name.to_string(),
        label: Some(action as usize - 1),
        subject: Some(subject),
        view: Some(camera),
        setup: Some(setup),
        replication: Some(replication),
        extra: BTreeMap::new(),
    })
}

/// Reads a `.skeleton` file with every field kept.
pub fn read_ntu_recording(path: &Path) -> Result<NtuRecording, ReadError> {
    let data = read_bytes(path)?;
    parse_ntu_recording(&data, path)
}

/// Reads a `.skeleton` file as a sample: xyz of up to `max_bodies` bodies (see
/// [`NtuRecording::to_skeleton`]); metadata from the file name when it has the NTU shape.
pub fn read_ntu(path: &Path, max_bodies: usize) -> Result<Sample, ReadError> {
    let rec = read_ntu_recording(path)?;
    Ok(recording_to_sample(&rec, max_bodies))
}

pub fn recording_to_sample(rec: &NtuRecording, max_bodies: usize) -> Sample {
    let meta = parse_ntu_name(&rec.name).unwrap_or_else(|| SampleMeta {
        name: rec.name.clone(),
        ..Default::default()
    });
    Sample {
        meta,
        skeleton: rec.to_skeleton(max_bodies),
    }
}

/// Joints of a Kinect v2 body.
pub const NTU_JOINTS: usize = 25;

/// Parses the bytes of a `.skeleton` file; `path` is only used to name the file in errors and
/// to derive the sample name.
pub fn parse_ntu_recording(data: &[u8], path: &Path) -> Result<NtuRecording, ReadError> {
    let mut p = Parser {
        lines: Lines::new(data),
        path,
    };
    let header = p.line(|| "the frame count".into())?;
    let n_frames = p.count(header, "frame count", MAX_FRAMES)?;
    // What the sample's array will hold (2 persons kept by default), checked before reading on.
    if n_frames * NTU_JOINTS * 3 * 2 > MAX_SAMPLE_VALUES {
        return Err(p.err(format!(
            "{n_frames} frames would need more than {MAX_SAMPLE_VALUES} values; not a Kinect recording"
        )));
    }
    let mut frames = Vec::with_capacity(n_frames.min(4096));
    let mut joints_per_body: Option<usize> = None;
    for t in 0..n_frames {
        let line = p.line(|| format!("the body count of frame {} of {n_frames}", t + 1))?;
        let n_bodies = p.count(line, "body count", MAX_BODIES_PER_FRAME)?;
        let mut bodies = Vec::with_capacity(n_bodies);
        for b in 0..n_bodies {
            let line = p.line(|| format!("body {} info of frame {}", b + 1, t + 1))?;
            let info = p.body_info(line)?;
            let line =
                p.line(|| format!("the joint count of body {} in frame {}", b + 1, t + 1))?;
            let n_joints = p.count(line, "joint count", MAX_JOINTS)?;
            if n_joints != NTU_JOINTS {
                return Err(p.err(format!(
                    "joint count is {n_joints}; a Kinect v2 body has {NTU_JOINTS}"
                )));
            }
            match joints_per_body {
                None => joints_per_body = Some(n_joints),
                Some(v) if v != n_joints => {
                    return Err(p.err(format!(
                        "joint count {n_joints} differs from the {v} of earlier bodies"
                    )))
                }
                _ => {}
            }
            let mut joints = Vec::with_capacity(n_joints);
            for v in 0..n_joints {
                let line = p.line(|| {
                    format!(
                        "joint {} of {n_joints} (body {}, frame {})",
                        v + 1,
                        b + 1,
                        t + 1
                    )
                })?;
                joints.push(p.joint(line)?);
            }
            bodies.push(NtuBody { info, joints });
        }
        frames.push(NtuFrame { bodies });
    }
    if !p.lines.only_blank_left() {
        return Err(ReadError::line(
            path,
            p.lines.line + 1,
            format!("unexpected content after the last of {n_frames} frames"),
        ));
    }
    if n_frames == 0 {
        return Err(ReadError::line(path, 1, "frame count is 0"));
    }
    Ok(NtuRecording {
        name: stem(path, ".skeleton"),
        frames,
        joints: joints_per_body.unwrap_or(NTU_JOINTS),
    })
}

struct Parser<'a> {
    lines: Lines<'a>,
    path: &'a Path,
}

impl<'a> Parser<'a> {
    fn err(&self, message: impl Into<String>) -> ReadError {
        ReadError::line(self.path, self.lines.line, message)
    }

    /// The next line; `what` describes it for the error when the file ends early (a closure,
    /// so nothing is formatted on the hot path).
    fn line(&mut self, what: impl FnOnce() -> String) -> Result<&'a [u8], ReadError> {
        self.lines.next_line().ok_or_else(|| {
            ReadError::line(
                self.path,
                self.lines.line + 1,
                format!("file ends where {} should be (truncated?)", what()),
            )
        })
    }

    fn count(&self, line: &[u8], what: &str, max: usize) -> Result<usize, ReadError> {
        let mut it = tokens(line);
        let tok = it
            .next()
            .ok_or_else(|| self.err(format!("expected the {what}, found an empty line")))?;
        if let Some(extra) = it.next() {
            return Err(self.err(format!(
                "expected only the {what}, found extra `{}`",
                show(extra)
            )));
        }
        parse_count(tok, what, max).map_err(|m| self.err(m))
    }

    fn fields<const N: usize>(
        &self,
        line: &'a [u8],
        what: &str,
    ) -> Result<[&'a [u8]; N], ReadError> {
        split_n::<N>(line).map_err(|n| {
            if n > N {
                self.err(format!("{what}: expected {N} values, found more"))
            } else {
                self.err(format!("{what}: expected {N} values, found {n}"))
            }
        })
    }

    fn int<T: std::str::FromStr>(&self, tok: &[u8], field: &str) -> Result<T, ReadError> {
        std::str::from_utf8(tok)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                self.err(format!(
                    "field {field}: `{}` is not a valid integer",
                    show(tok)
                ))
            })
    }

    fn float(&self, tok: &[u8], field: &str) -> Result<f32, ReadError> {
        parse_f32(tok, field).map_err(|m| self.err(m))
    }

    fn body_info(&self, line: &'a [u8]) -> Result<NtuBodyInfo, ReadError> {
        let f = self.fields::<10>(line, "body info line")?;
        Ok(NtuBodyInfo {
            body_id: self.int(f[0], "bodyID")?,
            clipped_edges: self.int(f[1], "clippedEdges")?,
            hand_left_confidence: self.int(f[2], "handLeftConfidence")?,
            hand_left_state: self.int(f[3], "handLeftState")?,
            hand_right_confidence: self.int(f[4], "handRightConfidence")?,
            hand_right_state: self.int(f[5], "handRightState")?,
            is_restricted: self.int(f[6], "isRestricted")?,
            lean_x: self.float(f[7], "leanX")?,
            lean_y: self.float(f[8], "leanY")?,
            tracking_state: self.int(f[9], "trackingState")?,
        })
    }

    fn joint(&self, line: &'a [u8]) -> Result<NtuJoint, ReadError> {
        if let Some(j) = fast_joint(line) {
            return Ok(j);
        }
        self.joint_checked(line)
    }

    /// The general path: handles every number syntax and names the bad field.
    fn joint_checked(&self, line: &'a [u8]) -> Result<NtuJoint, ReadError> {
        const NAMES: [&str; 11] = [
            "x",
            "y",
            "z",
            "depthX",
            "depthY",
            "colorX",
            "colorY",
            "orientationW",
            "orientationX",
            "orientationY",
            "orientationZ",
        ];
        let f = self.fields::<12>(line, "joint line")?;
        let mut v = [0f32; 11];
        for (k, x) in v.iter_mut().enumerate() {
            *x = self.float(f[k], NAMES[k])?;
        }
        Ok(NtuJoint {
            x: v[0],
            y: v[1],
            z: v[2],
            depth_x: v[3],
            depth_y: v[4],
            color_x: v[5],
            color_y: v[6],
            orientation_w: v[7],
            orientation_x: v[8],
            orientation_y: v[9],
            orientation_z: v[10],
            tracking_state: self.int(f[11], "trackingState")?,
        })
    }
}

/// One pass over a joint line of plain decimals (what the NTU release contains): 11 floats and
/// the tracking state. Returns `None` for anything else (exponents, long mantissas, junk, wrong
/// counts), which then goes through the checked path and its precise errors. Values are
/// correctly rounded, bit-identical to `str::parse` (see `fast_f32` in read/mod.rs).
fn fast_joint(line: &[u8]) -> Option<NtuJoint> {
    const POW10: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
    let n = line.len();
    let mut i = 0;
    let mut v = [0f32; 11];
    let is_space = |b: u8| b == b' ' || b == b'\t';
    for slot in v.iter_mut() {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        let neg = i < n && line[i] == b'-';
        i += usize::from(neg);
        let (mut m, mut frac, mut dot, mut any) = (0u32, 0usize, false, false);
        while i < n {
            let b = line[i];
            if b.is_ascii_digit() {
                m = m * 10 + u32::from(b - b'0');
                if m > 1 << 24 {
                    return None;
                }
                frac += usize::from(dot);
                any = true;
            } else if b == b'.' && !dot {
                dot = true;
            } else if is_space(b) {
                break;
            } else {
                return None;
            }
            i += 1;
        }
        if !any || frac >= POW10.len() {
            return None;
        }
        let x = m as f32 / POW10[frac];
        *slot = if neg { -x } else { x };
    }
    while i < n && is_space(line[i]) {
        i += 1;
    }
    let mut state: u32 = 0;
    let start = i;
    while i < n && line[i].is_ascii_digit() && i - start < 3 {
        state = state * 10 + u32::from(line[i] - b'0');
        i += 1;
    }
    if i == start || state > 255 {
        return None;
    }
    while i < n && is_space(line[i]) {
        i += 1;
    }
    if i != n {
        return None;
    }
    Some(NtuJoint {
        x: v[0],
        y: v[1],
        z: v[2],
        depth_x: v[3],
        depth_y: v[4],
        color_x: v[5],
        color_y: v[6],
        orientation_w: v[7],
        orientation_x: v[8],
        orientation_y: v[9],
        orientation_z: v[10],
        tracking_state: state as u8,
    })
}

/// Reads the official "samples with missing skeletons" list: a text header (the lines before
/// the first sample name), then one `SsssCcccPpppRrrrAaaa` name per line.
pub fn read_missing_list(path: &Path) -> Result<Vec<String>, ReadError> {
    let data = read_bytes(path)?;
    let mut lines = Lines::new(&data);
    let mut names = Vec::new();
    while let Some(line) = lines.next_line() {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if parse_ntu_name(text).is_some() {
            names.push(text.to_string());
        } else if !names.is_empty() || lines.line > 3 {
            return Err(ReadError::line(
                path,
                lines.line,
                format!(
                    "`{}` is not an NTU sample name (SsssCcccPpppRrrrAaaa)",
                    show(line)
                ),
            ));
        }
    }
    if names.is_empty() {
        return Err(ReadError::invalid(path, "lists no sample names"));
    }
    Ok(names)
}

/// Reads every `*.skeleton` file of `dir` in parallel. Classes are the 120 NTU RGB+D 120
/// names (NTU-60 uses the first 60). Add the missing-skeleton list to `opts.exclude` to
/// leave those samples out as the dataset authors ask.
pub fn read_ntu_dir(dir: &Path, opts: &DirOptions) -> Result<(Dataset, ReadReport), ReadError> {
    let files = list_files(dir, ".skeleton")?;
    let max_bodies = opts.max_bodies;
    read_files_parallel(
        dir,
        files,
        opts,
        "ntu-rgbd",
        "ntu25",
        NTU120_CLASSES.iter().map(|s| s.to_string()).collect(),
        |p| read_ntu(p, max_bodies),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntu_name_parses_and_rejects() {
        let m = parse_ntu_name("S001C003P008R002A058").unwrap();
        assert_eq!(
            (m.setup, m.view, m.subject, m.replication, m.label),
            (Some(1), Some(3), Some(8), Some(2), Some(57))
        );
        assert!(parse_ntu_name("S001C003P008R002A000").is_none());
        assert!(parse_ntu_name("S001C003P008R002X058").is_none());
        assert!(parse_ntu_name("S01C003P008R002A058").is_none());
    }

    /// The fast joint-line path gives the same bits as `str::parse` on every value it accepts,
    /// and declines what it cannot do exactly.
    #[test]
    fn fast_joint_matches_str_parse() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut fields = Vec::new();
            for _ in 0..11 {
                let r = next();
                let int = (r % 200) as i64 - 100;
                let digits = (r >> 20) % 6;
                let frac = (r >> 32) % 10u64.pow(digits as u32).max(1);
                let sign = if int == 0 && (r >> 60) & 1 == 1 {
                    "-"
                } else {
                    ""
                };
                fields.push(if digits == 0 {
                    format!("{sign}{int}")
                } else {
                    format!("{sign}{int}.{frac:0width$}", width = digits as usize)
                });
            }
            let line = format!("{} 2", fields.join(" "));
            let want: Vec<f32> = fields.iter().map(|f| f.parse().unwrap()).collect();
            if let Some(j) = fast_joint(line.as_bytes()) {
                accepted += 1;
                let got = [
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
                    j.orientation_z,
                ];
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.to_bits(), w.to_bits(), "{line}");
                }
                assert_eq!(j.tracking_state, 2);
            }
        }
        assert!(accepted > 15_000, "fast path used for {accepted} lines");
        // Single values over a wider range: accepted ones match `str::parse` bit for bit.
        for _ in 0..200_000 {
            let r = next();
            let digits = (r >> 20) % 10;
            let text = format!(
                "{}{}.{:0width$}",
                if r >> 63 == 1 { "-" } else { "" },
                r % 100_000,
                (r >> 32) % 10u64.pow(digits as u32),
                width = digits as usize
            );
            if let Some(x) = crate::read::fast_f32(text.as_bytes()) {
                assert_eq!(
                    x.to_bits(),
                    text.parse::<f32>().unwrap().to_bits(),
                    "{text}"
                );
            }
        }
        for bad in [
            "1 2 3",
            "1e3 0 0 0 0 0 0 0 0 0 0 2",
            "0 0 0 0 0 0 0 0 0 0 0 2 7",
            "0 0 0 0 0 0 0 0 0 0 0 999",
        ] {
            assert!(fast_joint(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
