//! Live recognition from a stream of poses: parse frames one at a time (JSON lines or CSV, any
//! layout, 2-D or 3-D, optional per-joint confidence) from any reader, keep a sliding window,
//! and every `hop` frames embed the window and recognise it against a [`Gallery`].
//!
//! Input formats (see `docs/inference.md`):
//! - JSON lines, one frame per line: `{"t": 0.033, "joints": [[x, y, z, c], ...]}`. `t` (seconds)
//!   is optional; a joint may be `null` (missing). Unknown keys are ignored. Several tracked
//!   people: `{"t": 0.033, "people": [{"id": 3, "joints": [...]}, ...]}` (or `"id"` beside
//!   `"joints"` for one); each track id gets its own window and its own events.
//! - CSV, one frame per row: `t, x0, y0, z0, c0, x1, ...`. An optional header row (first field
//!   not a number) is skipped; an empty `t` or joint field means "no time" / "missing joint".
//!
//! Each joint has `dims` coordinates (2: `x, y`, z is set to 0; 3: `x, y, z`), followed by a
//! confidence when `confidence` is on. Joints below `min_confidence` are zeroed, the dataset
//! convention for missing joints; confidence is not passed on to the model. Blank lines are
//! skipped. Errors name the 1-based input line.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::time::Instant;

use crossglg_data::Skeleton;
use serde::{Deserialize, Serialize};

use crate::embedder::{Describer, EmbedError, Embedder};
use crate::gallery::{Gallery, GalleryError, Recognition};
use crate::stats::percentile;
use crossglg_data::mapping::{map_skeleton, Mapping, MappingError};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("input line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("input line {line}: cannot read: {source}")]
    Read { line: usize, source: std::io::Error },
    #[error("input line {line}: longer than {limit} bytes; skipped")]
    LineTooLong { line: usize, limit: usize },
    #[error("no frame could be read: {skipped} lines skipped, the first: {first}")]
    NoFrames { skipped: usize, first: String },
    #[error("stream settings: {0}")]
    Config(String),
    #[error("window ending at frame {frame}: {source}")]
    Embed { frame: usize, source: EmbedError },
    #[error("window ending at frame {frame}: {source}")]
    Mapping { frame: usize, source: MappingError },
    #[error("window ending at frame {frame}: {message}")]
    Window { frame: usize, message: String },
    #[error("window ending at frame {frame}: {source}")]
    Gallery { frame: usize, source: GalleryError },
    #[error("cannot write events: {0}")]
    Write(std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoseFormat {
    #[default]
    JsonLines,
    Csv,
}

/// How to read frames and slide the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    pub format: PoseFormat,
    /// Joints per frame in the input layout.
    pub joints: usize,
    /// Coordinates per joint in the input: 2 or 3.
    pub dims: usize,
    /// Each joint carries a trailing confidence value.
    pub confidence: bool,
    /// Joints with confidence below this are zeroed (treated as missing).
    pub min_confidence: f32,
    /// Frame rate used for frames without `t`: `t = frame_index / fps`.
    pub fps: f64,
    /// Negate y (image coordinates point down; NTU's Kinect coordinates point up).
    pub flip_y: bool,
    /// Frames per window.
    pub window: usize,
    /// Frames between consecutive windows.
    pub hop: usize,
    /// Stop at the first bad line instead of reporting it and going on.
    pub strict: bool,
    /// Longest input line read; longer ones are skipped (or stop a strict stream) without
    /// being held in memory.
    pub max_line_bytes: usize,
}

/// The longest window a stream may ask for (frames): what a window holds is allocated once.
pub const MAX_WINDOW: usize = 10_000;

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            format: PoseFormat::JsonLines,
            joints: 25,
            dims: 3,
            confidence: false,
            min_confidence: 0.3,
            fps: 30.0,
            flip_y: false,
            window: 64,
            hop: 16,
            strict: false,
            max_line_bytes: 1 << 20,
        }
    }
}

impl StreamConfig {
    pub fn check(&self) -> Result<(), StreamError> {
        let bad = |m: String| Err(StreamError::Config(m));
        if self.joints == 0 {
            return bad("joints must be at least 1".into());
        }
        if !(2..=3).contains(&self.dims) {
            return bad(format!("dims must be 2 or 3, got {}", self.dims));
        }
        if self.window == 0 || self.hop == 0 {
            return bad(format!(
                "window ({}) and hop ({}) must be at least 1",
                self.window, self.hop
            ));
        }
        if self.window > MAX_WINDOW || self.hop > self.window {
            return bad(format!(
                "window ({}) must be at most {MAX_WINDOW} frames and hop ({}) at most the window",
                self.window, self.hop
            ));
        }
        if self.joints > 1024 {
            return bad(format!("joints must be at most 1024, got {}", self.joints));
        }
        if !(self.fps > 0.0 && self.fps.is_finite()) {
            return bad(format!("fps must be positive, got {}", self.fps));
        }
        if self.max_line_bytes < 64 {
            return bad(format!(
                "max_line_bytes must be at least 64, got {}",
                self.max_line_bytes
            ));
        }
        Ok(())
    }

    fn values_per_joint(&self) -> usize {
        self.dims + usize::from(self.confidence)
    }
}

/// One parsed frame of one person: time in seconds and `joints × 3` positions (missing joints
/// are zero); `track` is the person's id when the input tracks people.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub index: usize,
    pub line: usize,
    pub t: f64,
    pub joints: Vec<[f32; 3]>,
    pub track: Option<i64>,
}

#[derive(Deserialize)]
struct JsonFrame {
    #[serde(default)]
    t: Option<f64>,
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    joints: Option<RawJoints>,
    #[serde(default)]
    people: Option<Vec<JsonPerson>>,
}

#[derive(Deserialize)]
struct JsonPerson {
    id: i64,
    joints: RawJoints,
}

/// Most tracks followed at once; the one seen longest ago makes way for a new one.
pub const MAX_TRACKS: usize = 16;

/// One person's joints as the JSON gives them (`None`: missing).
type RawJoints = Vec<Option<Vec<f64>>>;

/// People on one input line, each `(track, joints)`.
type People = Vec<(Option<i64>, Vec<[f32; 3]>)>;

/// Reads frames one at a time from any buffered reader (stdin in the CLI).
pub struct FrameReader<R> {
    reader: R,
    cfg: StreamConfig,
    line: usize,
    frames: usize,
    buf: Vec<u8>,
    /// A CSV header may only be the first non-empty line.
    seen_line: bool,
    /// Further people of the last line read, handed out before the next line.
    pending: VecDeque<Frame>,
}

impl<R: BufRead> FrameReader<R> {
    pub fn new(reader: R, cfg: &StreamConfig) -> Result<Self, StreamError> {
        cfg.check()?;
        Ok(FrameReader {
            reader,
            cfg: cfg.clone(),
            line: 0,
            frames: 0,
            buf: Vec::new(),
            seen_line: false,
            pending: VecDeque::new(),
        })
    }

    /// The next line into `buf` (without its end), reading at most `max_line_bytes` of it:
    /// `Ok(None)` at the end of input, `Ok(Some(false))` for a line that was too long (consumed
    /// up to its end, not kept).
    fn read_line_bounded(&mut self) -> std::io::Result<Option<bool>> {
        self.buf.clear();
        let limit = self.cfg.max_line_bytes;
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(any.then_some(!too_long));
            }
            any = true;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > limit {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.reader.consume(take + usize::from(done));
            if done {
                return Ok(Some(!too_long));
            }
        }
    }

    fn parse_err(&self, message: String) -> StreamError {
        StreamError::Parse {
            line: self.line,
            message,
        }
    }

    /// Turns the values of one joint (`None` = missing) into a position.
    fn joint(&self, j: usize, vals: Option<&[f64]>) -> Result<[f32; 3], StreamError> {
        let Some(v) = vals else {
            return Ok([0.0; 3]);
        };
        let want = self.cfg.values_per_joint();
        if v.len() != want {
            return Err(self.parse_err(format!(
                "joint {j} has {} values, expected {want} ({} coordinates{})",
                v.len(),
                self.cfg.dims,
                if self.cfg.confidence {
                    " + confidence"
                } else {
                    ""
                }
            )));
        }
        if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
            return Err(self.parse_err(format!("joint {j} value {bad} is not a finite number")));
        }
        if self.cfg.confidence && (v[self.cfg.dims] as f32) < self.cfg.min_confidence {
            return Ok([0.0; 3]);
        }
        let y = if self.cfg.flip_y { -v[1] } else { v[1] };
        let z = if self.cfg.dims == 3 { v[2] } else { 0.0 };
        Ok([v[0] as f32, y as f32, z as f32])
    }

    fn parse_json(&self, text: &str) -> Result<(Option<f64>, People), StreamError> {
        let f: JsonFrame = serde_json::from_str(text)
            .map_err(|e| self.parse_err(format!("invalid JSON frame: {e}")))?;
        let people: Vec<(Option<i64>, RawJoints)> = match (f.joints, f.people) {
            (Some(j), None) => vec![(f.id, j)],
            (None, Some(p)) => {
                if p.len() > MAX_TRACKS {
                    return Err(self.parse_err(format!(
                        "frame has {} people, more than {MAX_TRACKS}",
                        p.len()
                    )));
                }
                let mut seen = Vec::with_capacity(p.len());
                for q in &p {
                    if seen.contains(&q.id) {
                        return Err(self.parse_err(format!("person id {} appears twice", q.id)));
                    }
                    seen.push(q.id);
                }
                p.into_iter().map(|q| (Some(q.id), q.joints)).collect()
            }
            _ => {
                return Err(self.parse_err(
                    "a frame needs either `joints` or `people` (a list of {id, joints})".into(),
                ))
            }
        };
        let mut out = Vec::with_capacity(people.len());
        for (id, joints) in people {
            if joints.len() != self.cfg.joints {
                return Err(self.parse_err(format!(
                    "frame has {} joints, expected {}",
                    joints.len(),
                    self.cfg.joints
                )));
            }
            let joints = joints
                .iter()
                .enumerate()
                .map(|(j, v)| self.joint(j, v.as_deref()))
                .collect::<Result<_, _>>()?;
            out.push((id, joints));
        }
        Ok((f.t, out))
    }

    /// `Ok(None)` for a header row.
    fn parse_csv(&self, text: &str) -> Result<Option<(Option<f64>, People)>, StreamError> {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let num = |s: &str| -> Result<Option<f64>, ()> {
            if s.is_empty() || s.eq_ignore_ascii_case("nan") {
                Ok(None)
            } else {
                s.parse::<f64>().map(Some).map_err(|_| ())
            }
        };
        if self.frames == 0 && !self.seen_line && num(fields[0]).is_err() {
            return Ok(None);
        }
        let per = self.cfg.values_per_joint();
        let want = 1 + self.cfg.joints * per;
        if fields.len() != want {
            return Err(self.parse_err(format!(
                "row has {} fields, expected {want} (t + {} joints × {per} values)",
                fields.len(),
                self.cfg.joints
            )));
        }
        let t = num(fields[0])
            .map_err(|_| self.parse_err(format!("field 1 (t) `{}` is not a number", fields[0])))?;
        let mut joints = Vec::with_capacity(self.cfg.joints);
        for j in 0..self.cfg.joints {
            let mut vals = Vec::with_capacity(per);
            let mut missing = false;
            for k in 0..per {
                let col = 1 + j * per + k;
                match num(fields[col]) {
                    Ok(Some(v)) => vals.push(v),
                    Ok(None) => missing = true,
                    Err(()) => {
                        return Err(self.parse_err(format!(
                            "field {} (joint {j}) `{}` is not a number",
                            col + 1,
                            fields[col]
                        )))
                    }
                }
            }
            joints.push(self.joint(j, (!missing).then_some(vals.as_slice()))?);
        }
        Ok(Some((t, vec![(None, joints)])))
    }
}

impl<R: BufRead> Iterator for FrameReader<R> {
    type Item = Result<Frame, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(f) = self.pending.pop_front() {
            return Some(Ok(f));
        }
        loop {
            self.line += 1;
            match self.read_line_bounded() {
                Ok(None) => return None,
                Ok(Some(true)) => {}
                Ok(Some(false)) => {
                    self.seen_line = true;
                    return Some(Err(StreamError::LineTooLong {
                        line: self.line,
                        limit: self.cfg.max_line_bytes,
                    }));
                }
                Err(source) => {
                    return Some(Err(StreamError::Read {
                        line: self.line,
                        source,
                    }))
                }
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim().to_string(),
                Err(_) => {
                    self.seen_line = true;
                    return Some(Err(self.parse_err("not UTF-8 text".into())));
                }
            };
            if text.is_empty() {
                continue;
            }
            let parsed = match self.cfg.format {
                PoseFormat::JsonLines => self.parse_json(&text).map(Some),
                PoseFormat::Csv => self.parse_csv(&text),
            };
            self.seen_line = true;
            match parsed {
                Err(e) => return Some(Err(e)),
                Ok(None) => continue,
                // a line with nobody on it is a frame in time, but no window gets it
                Ok(Some((_, people))) if people.is_empty() => {
                    self.frames += 1;
                    continue;
                }
                Ok(Some((t, people))) => {
                    let index = self.frames;
                    self.frames += 1;
                    let t = t.unwrap_or(index as f64 / self.cfg.fps);
                    let line = self.line;
                    self.pending
                        .extend(people.into_iter().map(|(track, joints)| Frame {
                            index,
                            line,
                            t,
                            joints,
                            track,
                        }));
                    return self.pending.pop_front().map(Ok);
                }
            }
        }
    }
}

/// One recognition of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// Time of the window's first and last frames (seconds).
    pub t_start: f64,
    pub t_end: f64,
    /// 0-based index of the window's last frame.
    pub frame_index: usize,
    /// The person's track id, when the input tracks people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<i64>,
    /// The gallery's decision; `None` (JSON `null`) only when the gallery is empty and the
    /// descriptions answer alone (`described`).
    pub recognition: Option<Recognition>,
    /// With descriptions ([`StreamRecognizer::with_descriptions`]): their answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub described: Option<crate::described::Described>,
    /// Wall time from the window being complete to its recognition: assembling the skeleton,
    /// layout mapping, preprocessing, embedding and gallery lookup (and the descriptions).
    pub latency_ms: f64,
}

/// The last `window` frames; says when a window is due (every `hop` frames once full).
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    window: usize,
    hop: usize,
    frames: VecDeque<Frame>,
    seen: usize,
}

impl SlidingWindow {
    pub fn new(window: usize, hop: usize) -> Self {
        SlidingWindow {
            window: window.max(1),
            hop: hop.max(1),
            frames: VecDeque::with_capacity(window),
            seen: 0,
        }
    }

    /// Adds a frame; returns true when a window is due.
    pub fn push(&mut self, frame: Frame) -> bool {
        if self.frames.len() == self.window {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
        self.seen += 1;
        self.seen >= self.window && (self.seen - self.window).is_multiple_of(self.hop)
    }

    /// The current window as a `[1, window, joints, 3]` skeleton.
    pub fn skeleton(&self) -> Skeleton {
        let v = self.frames.front().map_or(0, |f| f.joints.len());
        let mut sk = Skeleton::zeros(1, self.frames.len(), v, 3);
        for (t, f) in self.frames.iter().enumerate() {
            for (j, p) in f.joints.iter().enumerate() {
                for (c, &x) in p.iter().enumerate() {
                    sk.set(0, t, j, c, x);
                }
            }
        }
        sk
    }

    pub fn frames(&self) -> &VecDeque<Frame> {
        &self.frames
    }
}

/// Windowed recognition: feed frames with [`StreamRecognizer::push`], get an event every hop.
/// Each track (untracked input is one) has its own window; a track not seen for a whole
/// window's worth of frames is dropped, and beyond [`MAX_TRACKS`] the one seen longest ago
/// makes way, so memory stays bounded whatever ids arrive.
pub struct StreamRecognizer<'a, E: Embedder + ?Sized, P> {
    embedder: &'a E,
    gallery: &'a Gallery,
    mapping: Option<&'a Mapping>,
    preprocess: P,
    window: usize,
    hop: usize,
    /// Per track: its window and the index of the last frame it was in.
    tracks: std::collections::BTreeMap<Option<i64>, (SlidingWindow, usize)>,
    described: Option<StreamDescriptions<'a>>,
}

/// What [`StreamRecognizer::with_descriptions`] keeps: the scorer, the prior's weight and the
/// gallery classes' columns among the described classes.
struct StreamDescriptions<'a> {
    describer: &'a (dyn Describer + Sync),
    beta: f32,
    columns: Vec<Option<usize>>,
    /// The describer runs the embedder's weights: one pass embeds and describes.
    shared: bool,
}

impl<'a, E, P> StreamRecognizer<'a, E, P>
where
    E: Embedder + ?Sized,
    P: FnMut(Skeleton) -> Result<Skeleton, EmbedError>,
{
    /// `mapping` converts the input layout to the model's; `preprocess` gets the (mapped)
    /// window and returns what the embedder expects (normalisation, resampling, ...).
    pub fn new(
        embedder: &'a E,
        gallery: &'a Gallery,
        mapping: Option<&'a Mapping>,
        preprocess: P,
        window: usize,
        hop: usize,
    ) -> Result<Self, StreamError> {
        if embedder.dim() != gallery.dim {
            return Err(StreamError::Config(format!(
                "the embedder makes {}-dimensional embeddings but the gallery holds {}-dimensional ones (model `{}`)",
                embedder.dim(),
                gallery.dim,
                gallery.model_id
            )));
        }
        Ok(StreamRecognizer {
            embedder,
            gallery,
            mapping,
            preprocess,
            window,
            hop,
            tracks: Default::default(),
            described: None,
        })
    }

    /// Every event also answers from `describer`'s class descriptions: zero-shot, and the
    /// description prior with weight `beta` (0..1) when every gallery class is described.
    pub fn with_descriptions(
        mut self,
        describer: &'a (dyn Describer + Sync),
        beta: f32,
    ) -> Result<Self, StreamError> {
        if !(0.0..=1.0).contains(&beta) {
            return Err(StreamError::Config(format!(
                "the text prior's weight must be between 0 and 1, got {beta}"
            )));
        }
        self.described = Some(StreamDescriptions {
            describer,
            beta,
            columns: crate::described::gallery_columns(self.gallery, describer.classes()),
            shared: crate::embedder::shares_model(self.embedder, describer),
        });
        Ok(self)
    }

    /// Whether windows can be answered: by an enrolled class, or, with an empty gallery, by
    /// the descriptions alone (zero-shot). [`StreamRecognizer::push`] checks it too; callers
    /// check it before reading input so that a useless stream fails at once.
    pub fn check(&self) -> Result<(), StreamError> {
        if self.gallery.is_empty() && self.described.is_none() {
            return Err(StreamError::Config(
                "the gallery is empty: enroll a class first, or give class descriptions to recognise from them alone".into(),
            ));
        }
        Ok(())
    }

    /// Tracks with a window open now.
    pub fn tracks(&self) -> usize {
        self.tracks.len()
    }

    pub fn push(&mut self, frame: Frame) -> Result<Option<StreamEvent>, StreamError> {
        self.check()?;
        let (window, hop, now) = (self.window, self.hop, frame.index);
        self.tracks
            .retain(|_, (_, last)| now.saturating_sub(*last) <= window);
        if !self.tracks.contains_key(&frame.track) && self.tracks.len() >= MAX_TRACKS {
            let stalest = self
                .tracks
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| *k);
            if let Some(k) = stalest {
                self.tracks.remove(&k);
            }
        }
        let track = frame.track;
        let (win, last) = self
            .tracks
            .entry(track)
            .or_insert_with(|| (SlidingWindow::new(window, hop), now));
        *last = now;
        if let Some(first) = win.frames().front() {
            if first.joints.len() != frame.joints.len() {
                return Err(StreamError::Window {
                    frame: frame.index,
                    message: format!(
                        "frame has {} joints but earlier frames have {}",
                        frame.joints.len(),
                        first.joints.len()
                    ),
                });
            }
        }
        if !win.push(frame) {
            return Ok(None);
        }
        let start = Instant::now();
        let frames = win.frames();
        let (first, last) = (&frames[0], &frames[frames.len() - 1]);
        let (t_start, t_end, frame) = (first.t, last.t, last.index);
        let mut sk = win.skeleton();
        if let Some(m) = self.mapping {
            sk = map_skeleton(&sk, m).map_err(|source| StreamError::Mapping { frame, source })?;
        }
        let sk = (self.preprocess)(sk).map_err(|source| StreamError::Embed { frame, source })?;
        let one = std::slice::from_ref(&sk);
        // an empty gallery (zero-shot only) needs no embedding
        let embed = !self.gallery.is_empty();
        // with descriptions from the embedder's own model, one pass gives both
        let both = match &self.described {
            Some(d) if d.shared && embed => d
                .describer
                .embed_and_describe(one)
                .map_err(|source| StreamError::Embed { frame, source })?,
            _ => None,
        };
        let (emb, text) = match both {
            Some((e, t)) => (Some(e), Some(t)),
            None if embed => (
                Some(
                    self.embedder
                        .embed(one)
                        .map_err(|source| StreamError::Embed { frame, source })?,
                ),
                None,
            ),
            None => (None, None),
        };
        let e: Option<&[f32]> = match emb.as_deref() {
            None => None,
            Some([e]) => Some(e),
            Some(emb) => {
                return Err(StreamError::Window {
                    frame,
                    message: format!(
                        "the embedder returned {} embeddings for 1 window",
                        emb.len()
                    ),
                })
            }
        };
        let recognition = e
            .map(|e| self.gallery.recognize(e))
            .transpose()
            .map_err(|source| StreamError::Gallery { frame, source })?;
        let described = match &self.described {
            Some(d) => {
                let text = match text {
                    Some(t) => t,
                    None => d
                        .describer
                        .describe(one)
                        .map_err(|source| StreamError::Embed { frame, source })?,
                };
                let [t] = text.as_slice() else {
                    return Err(StreamError::Window {
                        frame,
                        message: format!("the describer returned {} rows for 1 window", text.len()),
                    });
                };
                let answer = crate::described::describe_one(
                    d.describer.classes(),
                    t,
                    &d.describer.prior_row(t),
                    self.gallery,
                    &d.columns,
                    e.unwrap_or_default(),
                    d.beta,
                )
                .map_err(|source| StreamError::Gallery { frame, source })?;
                Some(answer)
            }
            None => None,
        };
        Ok(Some(StreamEvent {
            t_start,
            t_end,
            frame_index: frame,
            track,
            recognition,
            described,
            latency_ms: start.elapsed().as_secs_f64() * 1e3,
        }))
    }
}

/// What [`run_stream`] did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub frames: usize,
    pub events: usize,
    /// Bad lines reported and passed over (always 0 when strict).
    #[serde(default)]
    pub skipped: usize,
    /// Per-window latency (window assembly, embedding, gallery lookup), ms; 0 without events.
    pub latency_mean_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
}

/// What [`run_stream`] hands its handler as it goes.
#[derive(Debug)]
pub enum StreamItem {
    /// A window's recognition.
    Event(StreamEvent),
    /// A line that could not be read as a frame, passed over (not in strict mode).
    Skipped(StreamError),
}

/// Reads frames from `input`, recognises every window and hands each [`StreamItem`] to `on`
/// as it happens (an error from it stops the stream). A bad line (malformed, too long, not
/// text) is handed over as [`StreamItem::Skipped`] and the stream goes on, unless
/// `cfg.strict`, which stops with its error; input without a single good frame but with bad
/// lines is an error either way. Frames after the last full window produce no event.
/// [`json_lines`] writes events the way the CLI does.
pub fn run_stream<R, E, P, H>(
    input: R,
    cfg: &StreamConfig,
    embedder: &E,
    gallery: &Gallery,
    mapping: Option<&Mapping>,
    preprocess: P,
    on: H,
) -> Result<StreamSummary, StreamError>
where
    R: BufRead,
    E: Embedder + ?Sized,
    P: FnMut(Skeleton) -> Result<Skeleton, EmbedError>,
    H: FnMut(StreamItem) -> Result<(), StreamError>,
{
    run_stream_with(input, cfg, embedder, gallery, mapping, None, preprocess, on)
}

/// [`run_stream`], with every event also answering from `described = (describer, prior
/// weight)` ([`StreamRecognizer::with_descriptions`]). With descriptions the gallery may be
/// empty: every event then answers from them alone (`recognition` is `None`).
#[allow(clippy::too_many_arguments)]
pub fn run_stream_with<R, E, P, H>(
    input: R,
    cfg: &StreamConfig,
    embedder: &E,
    gallery: &Gallery,
    mapping: Option<&Mapping>,
    described: Option<(&(dyn Describer + Sync), f32)>,
    preprocess: P,
    mut on: H,
) -> Result<StreamSummary, StreamError>
where
    R: BufRead,
    E: Embedder + ?Sized,
    P: FnMut(Skeleton) -> Result<Skeleton, EmbedError>,
    H: FnMut(StreamItem) -> Result<(), StreamError>,
{
    if let Some(m) = mapping {
        if m.source.num_joints() != cfg.joints {
            return Err(StreamError::Config(format!(
                "input has {} joints but the mapping's source layout `{}` has {}",
                cfg.joints,
                m.source.name,
                m.source.num_joints()
            )));
        }
    }
    let reader = FrameReader::new(input, cfg)?;
    let mut rec =
        StreamRecognizer::new(embedder, gallery, mapping, preprocess, cfg.window, cfg.hop)?;
    if let Some((d, beta)) = described {
        rec = rec.with_descriptions(d, beta)?;
    }
    rec.check()?;
    let mut frames = 0;
    // people of one input line share its index: count lines, not people
    let mut last_index = None;
    let mut skipped = 0;
    let mut first_skip: Option<String> = None;
    let mut latencies = Vec::new();
    for frame in reader {
        let frame = match frame {
            Ok(f) => f,
            Err(e @ StreamError::Read { .. }) => return Err(e),
            Err(e) if cfg.strict => return Err(e),
            Err(e) => {
                skipped += 1;
                first_skip.get_or_insert_with(|| e.to_string());
                on(StreamItem::Skipped(e))?;
                continue;
            }
        };
        if last_index != Some(frame.index) {
            frames += 1;
            last_index = Some(frame.index);
        }
        if let Some(ev) = rec.push(frame)? {
            latencies.push(ev.latency_ms);
            on(StreamItem::Event(ev))?;
        }
    }
    if frames == 0 && skipped > 0 {
        return Err(StreamError::NoFrames {
            skipped,
            first: first_skip.unwrap_or_default(),
        });
    }
    let events = latencies.len();
    latencies.sort_by(f64::total_cmp);
    Ok(StreamSummary {
        frames,
        events,
        skipped,
        latency_mean_ms: latencies.iter().sum::<f64>() / events.max(1) as f64,
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p95_ms: percentile(&latencies, 0.95),
    })
}

/// A [`run_stream`] handler from an event handler: skipped lines pass silently (they are still
/// counted in [`StreamSummary::skipped`]).
pub fn events_only<F>(mut f: F) -> impl FnMut(StreamItem) -> Result<(), StreamError>
where
    F: FnMut(StreamEvent) -> Result<(), StreamError>,
{
    move |item| match item {
        StreamItem::Event(e) => f(e),
        StreamItem::Skipped(_) => Ok(()),
    }
}

/// An event handler for [`run_stream`] that writes each event as one JSON line to `out`,
/// flushed per event so a pipe sees it at once.
pub fn json_lines<W: Write>(mut out: W) -> impl FnMut(StreamEvent) -> Result<(), StreamError> {
    move |ev| {
        let line = serde_json::to_string(&ev).expect("events serialise");
        writeln!(out, "{line}").map_err(StreamError::Write)?;
        out.flush().map_err(StreamError::Write)
    }
}
