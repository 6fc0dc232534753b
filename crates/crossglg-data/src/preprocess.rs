//! Turns a raw [`Skeleton`] of any length and person count into the fixed `[M, T, V, C]`
//! input the encoders take, the way the CTR-GCN family of codebases does it:
//!
//! 1. keep up to `persons` bodies, dropping noise bodies first (NTU FAQ heuristics, thresholds as
//!    in CTR-GCN's `get_raw_denoised_data.py`), main actor = most motion;
//! 2. drop frames where no kept body is present;
//! 3. centre on the layout's centre joint (of the first frame, or per frame);
//! 4. optionally rotate into a body-aligned frame (off by default);
//! 5. crop the valid frames (random ratio in training, centre crop in testing) and resize to
//!    `frames` by linear interpolation (PyTorch `align_corners=False` semantics);
//! 6. random rotation in training;
//! 7. pad persons with zeros.
//!
//! Every random draw comes from a generator seeded by `(seed, epoch, sample index)`
//! ([`crate::rng::sample_rng`]), so results do not depend on threads or order.
//! See `docs/preprocessing.md` for defaults and provenance.

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::rng::{sample_rng, uniform};
use crate::sample::Skeleton;

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("preprocess config: {0}")]
    Config(String),
    #[error("sample {name}: {message}")]
    Sample { name: String, message: String },
    #[error("loading sample {index} for a batch: {source}")]
    Load {
        index: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Training draws random crops and rotations; testing is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Train,
    Test,
}

/// Where the origin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CenterMode {
    /// Leave coordinates as they are.
    None,
    /// The centre joint of the main body in its first present frame, subtracted from every
    /// frame (CTR-GCN `seq_transformation.py`; keeps global translation).
    FirstFrame,
    /// The centre joint of the main body in each frame (removes global translation).
    PerFrame,
}

/// Which axis the spine is rotated onto by view normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpAxis {
    /// pyskl `PreNormalize3D` (spine onto +z).
    Z,
    /// Spine onto +y, the "up" of Kinect camera coordinates.
    Y,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DenoiseConfig {
    pub enabled: bool,
    /// Bodies present in fewer frames than this are noise (CTR-GCN: 11), unless all are.
    pub min_frames: usize,
    /// A frame looks like a person when x-spread <= ratio * y-spread (CTR-GCN: 0.8).
    pub max_spread_ratio: f32,
    /// A body whose fraction of non-person-like frames exceeds this is noise (CTR-GCN: 0.69754).
    pub max_noise_fraction: f32,
    /// Channel index of the horizontal and vertical axes for the spread test (NTU: x=0, y=1).
    pub horizontal_channel: usize,
    pub vertical_channel: usize,
}

impl Default for DenoiseConfig {
    fn default() -> Self {
        DenoiseConfig {
            enabled: true,
            min_frames: 11,
            max_spread_ratio: 0.8,
            max_noise_fraction: 0.69754,
            horizontal_channel: 0,
            vertical_channel: 1,
        }
    }
}

/// View normalisation: an orthonormal-frame variant of pyskl's `PreNormalize3D`. From the main
/// body's first frame it builds `up` = mean(top) - mean(bottom) and `across` = mean(right) -
/// mean(left), orthogonalised against `up`, and rotates every frame so that `up` lies on
/// `up_axis` and `across` on +x exactly. Empty joint lists mean: hips for `bottom`, shoulders
/// for `top`, left/right hip for `left`/`right` (pyskl uses the shoulders for the x axis; set
/// `left = ["left_shoulder"]`, `right = ["right_shoulder"]` for that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewConfig {
    pub enabled: bool,
    pub up_axis: UpAxis,
    pub bottom: Vec<String>,
    pub top: Vec<String>,
    pub left: Vec<String>,
    pub right: Vec<String>,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            enabled: false,
            up_axis: UpAxis::Z,
            bottom: vec![],
            top: vec![],
            left: vec![],
            right: vec![],
        }
    }
}

/// CTR-GCN `valid_crop_resize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CropConfig {
    /// Training: crop ratio drawn uniformly from this interval (CTR-GCN `p_interval=[0.5, 1]`).
    pub train_ratio: [f32; 2],
    /// Testing: centre crop keeping this fraction (CTR-GCN `p_interval=[0.95]`).
    pub test_ratio: f32,
    /// Training crops are at least this long (or the whole sequence when shorter). Unset (the
    /// default): half the output window, so the random crop still varies on sequences not much
    /// longer than the window. CTR-GCN hard-codes 64 for its 64-frame window; a bound at or
    /// above the window turns cropping off for every sequence shorter than the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_frames: Option<usize>,
}

impl CropConfig {
    /// The lower bound on training crop lengths for an output window of `frames`.
    pub fn min_frames_for(&self, frames: usize) -> usize {
        self.min_frames.unwrap_or(frames / 2).max(1)
    }
}

impl Default for CropConfig {
    fn default() -> Self {
        CropConfig {
            train_ratio: [0.5, 1.0],
            test_ratio: 0.95,
            min_frames: None,
        }
    }
}

/// CTR-GCN `random_rot`: one rotation per sample, angles uniform in `[-a, a]` about x, y, z,
/// composed as `Rz · Ry · Rx`. Training only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotateConfig {
    pub enabled: bool,
    /// Largest angle in radians about x, y and z.
    pub max_angle: [f32; 3],
}

impl Default for RotateConfig {
    fn default() -> Self {
        RotateConfig {
            enabled: true,
            max_angle: [0.3, 0.3, 0.3],
        }
    }
}

/// All preprocessing settings. `Default` reproduces the CTR-GCN family's choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Output persons M (extra bodies dropped, missing ones zero-padded).
    pub persons: usize,
    /// Output frames T.
    pub frames: usize,
    /// How many leading channels are spatial coordinates (centring and rotations touch only
    /// these; e.g. 2 for 2-D keypoints with a score channel).
    pub spatial_channels: usize,
    /// Remove frames in which no kept body is present before cropping.
    pub drop_empty_frames: bool,
    pub denoise: DenoiseConfig,
    pub center: CenterMode,
    pub view: ViewConfig,
    pub crop: CropConfig,
    pub rotate: RotateConfig,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            persons: 2,
            frames: 64,
            spatial_channels: 3,
            drop_empty_frames: true,
            denoise: DenoiseConfig::default(),
            center: CenterMode::FirstFrame,
            view: ViewConfig::default(),
            crop: CropConfig::default(),
            rotate: RotateConfig::default(),
        }
    }
}

impl PreprocessConfig {
    /// Reads the config from TOML; unknown keys are errors, missing keys take defaults.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, PreprocessError> {
        toml::from_str(text).map_err(|e| PreprocessError::Config(format!("{origin}: {e}")))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config always serialises")
    }
}

/// A batch in the model's `N × C × T × V × M` order (`x[n][c][t][v][m]`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    /// `[N, C, T, V, M]`.
    pub shape: [usize; 5],
}

/// A [`PreprocessConfig`] resolved against a layout.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    cfg: PreprocessConfig,
    joints: usize,
    center: usize,
    view: Option<ViewJoints>,
}

#[derive(Debug, Clone)]
struct ViewJoints {
    bottom: Vec<usize>,
    top: Vec<usize>,
    left: Vec<usize>,
    right: Vec<usize>,
}

impl Preprocessor {
    pub fn new(cfg: PreprocessConfig, layout: &Layout) -> Result<Self, PreprocessError> {
        let bad = |m: String| Err(PreprocessError::Config(m));
        if cfg.persons == 0 || cfg.frames == 0 {
            return bad("`persons` and `frames` must be at least 1".into());
        }
        let [lo, hi] = cfg.crop.train_ratio;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return bad(format!(
                "crop.train_ratio must satisfy 0 < lo <= hi <= 1, got [{lo}, {hi}]"
            ));
        }
        if !(cfg.crop.test_ratio > 0.0 && cfg.crop.test_ratio <= 1.0) {
            return bad(format!(
                "crop.test_ratio must be in (0, 1], got {}",
                cfg.crop.test_ratio
            ));
        }
        if cfg.spatial_channels == 0 || cfg.spatial_channels > 3 {
            return bad(format!(
                "spatial_channels must be 1, 2 or 3, got {}",
                cfg.spatial_channels
            ));
        }
        let view = if cfg.view.enabled {
            if cfg.spatial_channels != 3 {
                return bad("view normalisation needs 3 spatial channels".into());
            }
            let resolve = |names: &[String], default: &[&str], what: &str| {
                let names: Vec<String> = if names.is_empty() {
                    default.iter().map(|s| s.to_string()).collect()
                } else {
                    names.to_vec()
                };
                names
                    .iter()
                    .map(|n| {
                        layout.joint_index(n).ok_or_else(|| {
                            PreprocessError::Config(format!(
                                "view.{what}: layout `{}` has no joint `{n}` (set view.{what} to joint names of this layout)",
                                layout.name
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            Some(ViewJoints {
                bottom: resolve(&cfg.view.bottom, &["left_hip", "right_hip"], "bottom")?,
                top: resolve(&cfg.view.top, &["left_shoulder", "right_shoulder"], "top")?,
                left: resolve(&cfg.view.left, &["left_hip"], "left")?,
                right: resolve(&cfg.view.right, &["right_hip"], "right")?,
            })
        } else {
            None
        };
        Ok(Preprocessor {
            joints: layout.num_joints(),
            center: layout.center,
            view,
            cfg,
        })
    }

    pub fn config(&self) -> &PreprocessConfig {
        &self.cfg
    }

    /// Preprocesses one sample. `index` is the sample's index in its dataset, so the same
    /// sample gets the same augmentation in an epoch however batches are formed.
    pub fn process(
        &self,
        name: &str,
        skel: &Skeleton,
        mode: Mode,
        seed: u64,
        epoch: u64,
        index: u64,
    ) -> Result<Skeleton, PreprocessError> {
        let fail = |message: String| PreprocessError::Sample {
            name: name.to_string(),
            message,
        };
        if skel.joints != self.joints {
            return Err(fail(format!(
                "has {} joints but the layout has {}",
                skel.joints, self.joints
            )));
        }
        if skel.channels < self.cfg.spatial_channels {
            return Err(fail(format!(
                "has {} channels, fewer than spatial_channels = {}",
                skel.channels, self.cfg.spatial_channels
            )));
        }
        if skel.data.len() != skel.persons * skel.frames * skel.joints * skel.channels {
            return Err(fail("data length does not match its shape".into()));
        }
        if skel.data.iter().any(|x| !x.is_finite()) {
            return Err(fail("contains NaN or infinite coordinates".into()));
        }
        let mut rng = sample_rng(seed, epoch, index);
        let mut s = self.select_bodies(skel);
        if self.cfg.drop_empty_frames {
            s = drop_empty_frames(&s);
        }
        self.center_on(&mut s);
        if let Some(v) = &self.view {
            normalize_view(&mut s, v, self.cfg.view.up_axis);
        }
        // Trailing all-zero frames (padding in some sources) are not valid frames.
        let (begin, len) = crop_window(
            valid_frames(&s),
            &self.cfg.crop,
            self.cfg.frames,
            mode,
            &mut rng,
        );
        let mut out = resize(&s, begin, len, self.cfg.frames);
        if mode == Mode::Train && self.cfg.rotate.enabled {
            let a = self.cfg.rotate.max_angle;
            let angles = [
                uniform(&mut rng, -a[0], a[0]),
                uniform(&mut rng, -a[1], a[1]),
                uniform(&mut rng, -a[2], a[2]),
            ];
            rotate(&mut out, &ctr_rotation(angles), self.cfg.spatial_channels);
        }
        Ok(pad_persons(&out, self.cfg.persons))
    }

    /// Preprocesses the samples `indices` (dataset indices, also the RNG keys) in parallel and
    /// lays them out as one `N × C × T × V × M` array. `fetch(i)` returns sample `i`'s name and
    /// skeleton (e.g. from a packed file).
    pub fn batch<F, E>(
        &self,
        indices: &[usize],
        fetch: F,
        mode: Mode,
        seed: u64,
        epoch: u64,
    ) -> Result<Batch, PreprocessError>
    where
        F: Fn(usize) -> Result<(String, Skeleton), E> + Sync,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let done: Vec<Skeleton> = indices
            .par_iter()
            .map(|&i| {
                let (name, skel) = fetch(i).map_err(|e| PreprocessError::Load {
                    index: i,
                    source: e.into(),
                })?;
                self.process(&name, &skel, mode, seed, epoch, i as u64)
            })
            .collect::<Result<_, _>>()?;
        self.stack(&done)
    }

    /// Same as [`Preprocessor::batch`] for skeletons already in memory.
    pub fn batch_of(
        &self,
        items: &[(usize, &str, &Skeleton)],
        mode: Mode,
        seed: u64,
        epoch: u64,
    ) -> Result<Batch, PreprocessError> {
        let done: Vec<Skeleton> = items
            .par_iter()
            .map(|(i, name, s)| self.process(name, s, mode, seed, epoch, *i as u64))
            .collect::<Result<_, _>>()?;
        self.stack(&done)
    }

    fn stack(&self, done: &[Skeleton]) -> Result<Batch, PreprocessError> {
        let channels = done.first().map_or(3, |s| s.channels);
        if let Some(s) = done.iter().find(|s| s.channels != channels) {
            return Err(PreprocessError::Config(format!(
                "batch mixes samples with {} and {} channels",
                channels, s.channels
            )));
        }
        Ok(stack_nctvm(
            done,
            self.cfg.persons,
            self.cfg.frames,
            self.joints,
        ))
    }

    fn present(s: &Skeleton, m: usize, t: usize) -> bool {
        s.frame(m, t).iter().any(|&x| x != 0.0)
    }

    /// Keeps the `persons` bodies with most motion after dropping noise bodies.
    fn select_bodies(&self, skel: &Skeleton) -> Skeleton {
        let d = &self.cfg.denoise;
        let mut bodies: Vec<usize> = (0..skel.persons)
            .filter(|&m| (0..skel.frames).any(|t| Self::present(skel, m, t)))
            .collect();
        if d.enabled && bodies.len() > 1 {
            let keep: Vec<usize> = bodies
                .iter()
                .copied()
                .filter(|&m| !self.is_noise_body(skel, m))
                .collect();
            // Never drop every body: fall back to the original set, ranked by motion below.
            if !keep.is_empty() {
                bodies = keep;
            }
        }
        let mut ranked: Vec<(usize, f64)> =
            bodies.iter().map(|&m| (m, self.motion(skel, m))).collect();
        // Stable sort: ties keep reading order.
        ranked.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        ranked.truncate(self.cfg.persons);
        let mut out = Skeleton::zeros(ranked.len(), skel.frames, skel.joints, skel.channels);
        let n = skel.joints * skel.channels;
        for (k, (m, _)) in ranked.iter().enumerate() {
            for t in 0..skel.frames {
                let dst = (k * skel.frames + t) * n;
                out.data[dst..dst + n].copy_from_slice(skel.frame(*m, t));
            }
        }
        out
    }

    fn is_noise_body(&self, skel: &Skeleton, m: usize) -> bool {
        let d = &self.cfg.denoise;
        let frames: Vec<usize> = (0..skel.frames)
            .filter(|&t| Self::present(skel, m, t))
            .collect();
        if frames.len() < d.min_frames {
            return true;
        }
        if d.horizontal_channel >= skel.channels || d.vertical_channel >= skel.channels {
            return false;
        }
        let spread = |t: usize, c: usize| {
            let f = skel.frame(m, t);
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for v in 0..skel.joints {
                let x = f[v * skel.channels + c];
                lo = lo.min(x);
                hi = hi.max(x);
            }
            hi - lo
        };
        let bad = frames
            .iter()
            .filter(|&&t| {
                spread(t, d.horizontal_channel) > d.max_spread_ratio * spread(t, d.vertical_channel)
            })
            .count();
        bad as f32 / frames.len() as f32 > d.max_noise_fraction
    }

    /// NTU FAQ (7): sum over joints and spatial channels of the variance over present frames.
    fn motion(&self, skel: &Skeleton, m: usize) -> f64 {
        let frames: Vec<usize> = (0..skel.frames)
            .filter(|&t| Self::present(skel, m, t))
            .collect();
        if frames.len() < 2 {
            return 0.0;
        }
        let c_sp = self.cfg.spatial_channels.min(skel.channels);
        let n = frames.len() as f64;
        let mut total = 0.0;
        for v in 0..skel.joints {
            for c in 0..c_sp {
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for &t in &frames {
                    let x = skel.get(m, t, v, c) as f64;
                    s += x;
                    s2 += x * x;
                }
                total += (s2 / n - (s / n).powi(2)).max(0.0);
            }
        }
        total
    }

    fn center_on(&self, s: &mut Skeleton) {
        let c_sp = self.cfg.spatial_channels.min(s.channels);
        let origin_at = |s: &Skeleton, t: usize| -> [f32; 3] {
            let mut o = [0.0; 3];
            for (c, oc) in o.iter_mut().enumerate().take(c_sp) {
                *oc = s.get(0, t, self.center, c);
            }
            o
        };
        let origins: Vec<[f32; 3]> = match self.cfg.center {
            CenterMode::None => return,
            CenterMode::FirstFrame => {
                let Some(t0) = (0..s.frames).find(|&t| Self::present(s, 0, t)) else {
                    return;
                };
                vec![origin_at(s, t0); s.frames]
            }
            CenterMode::PerFrame => {
                let Some(t0) = (0..s.frames).find(|&t| Self::present(s, 0, t)) else {
                    return;
                };
                // Frames where the main body is absent reuse the last known origin.
                let mut last = origin_at(s, t0);
                (0..s.frames)
                    .map(|t| {
                        if Self::present(s, 0, t) {
                            last = origin_at(s, t);
                        }
                        last
                    })
                    .collect()
            }
        };
        for m in 0..s.persons {
            for (t, o) in origins.iter().enumerate() {
                if !Self::present(s, m, t) {
                    continue;
                }
                for v in 0..s.joints {
                    for (c, oc) in o.iter().enumerate().take(c_sp) {
                        let i = s.index(m, t, v, c);
                        s.data[i] -= oc;
                    }
                }
            }
        }
    }
}

/// Removes frames in which no body is present, keeping order.
fn drop_empty_frames(s: &Skeleton) -> Skeleton {
    let keep: Vec<usize> = (0..s.frames)
        .filter(|&t| (0..s.persons).any(|m| Preprocessor::present(s, m, t)))
        .collect();
    if keep.len() == s.frames {
        return s.clone();
    }
    let mut out = Skeleton::zeros(s.persons, keep.len(), s.joints, s.channels);
    let n = s.joints * s.channels;
    for m in 0..s.persons {
        for (k, &t) in keep.iter().enumerate() {
            let dst = (m * keep.len() + k) * n;
            out.data[dst..dst + n].copy_from_slice(s.frame(m, t));
        }
    }
    out
}

/// The valid length: frames up to the last one with any non-zero value (CTR-GCN counts
/// non-zero frames and assumes they come first; this is the same for trailing zero padding).
pub fn valid_frames(s: &Skeleton) -> usize {
    (0..s.frames)
        .rev()
        .find(|&t| (0..s.persons).any(|m| Preprocessor::present(s, m, t)))
        .map_or(0, |t| t + 1)
}

/// `(begin, length)` of the crop of a sequence of `frames` valid frames, CTR-GCN
/// `valid_crop_resize` rules, for an output window of `window` frames (which sets the default
/// lower bound on training crops, [`CropConfig::min_frames_for`]).
pub fn crop_window<R: Rng + ?Sized>(
    frames: usize,
    cfg: &CropConfig,
    window: usize,
    mode: Mode,
    rng: &mut R,
) -> (usize, usize) {
    if frames == 0 {
        return (0, 0);
    }
    match mode {
        Mode::Test => {
            let bias = ((1.0 - cfg.test_ratio as f64) * frames as f64 / 2.0) as usize;
            let len = frames.saturating_sub(2 * bias).max(1);
            (bias.min(frames - len), len)
        }
        Mode::Train => {
            let [lo, hi] = cfg.train_ratio;
            let p = uniform(rng, lo, hi) as f64;
            let len = ((frames as f64 * p).floor() as usize)
                .max(cfg.min_frames_for(window))
                .min(frames)
                .max(1);
            let bias = rng.random_range(0..=frames - len);
            (bias, len)
        }
    }
}

/// Linear resize of frames `begin..begin+len` to `out_frames`, like PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)` along time.
fn resize(s: &Skeleton, begin: usize, len: usize, out_frames: usize) -> Skeleton {
    let mut out = Skeleton::zeros(s.persons, out_frames, s.joints, s.channels);
    if len == 0 {
        return out;
    }
    let n = s.joints * s.channels;
    let scale = len as f64 / out_frames as f64;
    for t in 0..out_frames {
        let (i0, i1, w) = source_index(t, scale, len);
        for m in 0..s.persons {
            let a = s.frame(m, begin + i0);
            let b = s.frame(m, begin + i1);
            let dst = (m * out_frames + t) * n;
            for k in 0..n {
                out.data[dst + k] = a[k] + (b[k] - a[k]) * w;
            }
        }
    }
    out
}

/// Source frames and weight of output frame `t` (half-pixel centres, clamped at 0).
fn source_index(t: usize, scale: f64, len: usize) -> (usize, usize, f32) {
    let src = ((t as f64 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(len - 1);
    let i1 = (i0 + 1).min(len - 1);
    (i0, i1, (src - i0 as f64) as f32)
}

/// CTR-GCN `_rot`: `Rz · Ry · Rx` with its sign conventions.
pub fn ctr_rotation([ax, ay, az]: [f32; 3]) -> [[f32; 3]; 3] {
    let (cx, sx) = (ax.cos(), ax.sin());
    let (cy, sy) = (ay.cos(), ay.sin());
    let (cz, sz) = (az.cos(), az.sin());
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, sx], [0.0, -sx, cx]];
    let ry = [[cy, 0.0, -sy], [0.0, 1.0, 0.0], [sy, 0.0, cy]];
    let rz = [[cz, sz, 0.0], [-sz, cz, 0.0], [0.0, 0.0, 1.0]];
    matmul3(&matmul3(&rz, &ry), &rx)
}

pub(crate) fn matmul3(a: &[[f32; 3]; 3], b: &[[f32; 3]; 3]) -> [[f32; 3]; 3] {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// Applies `r` to the spatial channels of every joint. With fewer than 3 spatial channels the
/// missing coordinates are taken as 0 and the first ones written back (2-D: in-plane part).
fn rotate(s: &mut Skeleton, r: &[[f32; 3]; 3], spatial: usize) {
    let c = s.channels;
    let sp = spatial.min(c).min(3);
    for p in s.data.chunks_exact_mut(c) {
        let mut v = [0.0f32; 3];
        v[..sp].copy_from_slice(&p[..sp]);
        for (i, row) in r.iter().enumerate().take(sp) {
            p[i] = row[0] * v[0] + row[1] * v[1] + row[2] * v[2];
        }
    }
}

fn normalize_view(s: &mut Skeleton, j: &ViewJoints, up_axis: UpAxis) {
    let Some(t0) = (0..s.frames).find(|&t| Preprocessor::present(s, 0, t)) else {
        return;
    };
    let mean = |ix: &[usize]| {
        let mut p = [0.0f32; 3];
        for &v in ix {
            for (c, pc) in p.iter_mut().enumerate() {
                *pc += s.get(0, t0, v, c) / ix.len() as f32;
            }
        }
        p
    };
    let sub = |a: [f32; 3], b: [f32; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let dot = |a: [f32; 3], b: [f32; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let norm = |a: [f32; 3]| {
        let l = dot(a, a).sqrt();
        (l > 1e-6).then(|| [a[0] / l, a[1] / l, a[2] / l])
    };
    let Some(u) = norm(sub(mean(&j.top), mean(&j.bottom))) else {
        return;
    };
    let across = sub(mean(&j.right), mean(&j.left));
    let d = dot(across, u);
    let Some(a) = norm([
        across[0] - d * u[0],
        across[1] - d * u[1],
        across[2] - d * u[2],
    ]) else {
        return;
    };
    let cross = |p: [f32; 3], q: [f32; 3]| {
        [
            p[1] * q[2] - p[2] * q[1],
            p[2] * q[0] - p[0] * q[2],
            p[0] * q[1] - p[1] * q[0],
        ]
    };
    // Rows are the images of the new axes: R·a = x, R·u = up axis, right-handed.
    let r = match up_axis {
        UpAxis::Z => [a, cross(u, a), u],
        UpAxis::Y => [a, u, cross(a, u)],
    };
    rotate(s, &r, 3);
}

fn pad_persons(s: &Skeleton, persons: usize) -> Skeleton {
    let mut out = Skeleton::zeros(persons, s.frames, s.joints, s.channels);
    let n = s.frames * s.joints * s.channels;
    let k = s.persons.min(persons);
    out.data[..k * n].copy_from_slice(&s.data[..k * n]);
    out
}

/// Writes one `[M, T, V, C]` skeleton into `dst` as `[C, T, V, M]`.
fn to_nctvm(s: &Skeleton, dst: &mut [f32]) {
    let (m_n, t_n, v_n, c_n) = (s.persons, s.frames, s.joints, s.channels);
    for m in 0..m_n {
        for t in 0..t_n {
            for v in 0..v_n {
                for c in 0..c_n {
                    dst[((c * t_n + t) * v_n + v) * m_n + m] = s.get(m, t, v, c);
                }
            }
        }
    }
}

/// Stacks preprocessed `[M, T, V, C]` skeletons into an `N × C × T × V × M` batch.
pub fn stack_nctvm(items: &[Skeleton], persons: usize, frames: usize, joints: usize) -> Batch {
    let channels = items.first().map_or(3, |s| s.channels);
    let per = channels * frames * joints * persons;
    let mut x = vec![0.0f32; items.len() * per];
    x.par_chunks_mut(per.max(1))
        .zip(items.par_iter())
        .for_each(|(dst, s)| to_nctvm(s, dst));
    Batch {
        x,
        shape: [items.len(), channels, frames, joints, persons],
    }
}
