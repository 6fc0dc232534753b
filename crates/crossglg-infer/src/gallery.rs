//! A gallery of enrolled action classes for recognition on plain embeddings: enroll one or more
//! exemplar embeddings per class, then recognise a new embedding by its most similar class,
//! with a margin and an "unknown" decision below a similarity threshold.
//!
//! A class's score is the cosine similarity of its most similar exemplar (nearest exemplar, as
//! in one-shot evaluation). The threshold should be calibrated on base classes with
//! [`calibrate_threshold`], never on the classes being recognised.
//!
//! ```
//! use crossglg_infer::gallery::Gallery;
//!
//! let mut g = Gallery::new(3, "demo-model");
//! g.enroll("wave", &[vec![1.0, 0.0, 0.0]], Some("wave_01.skeleton")).unwrap();
//! g.enroll("sit down", &[vec![0.0, 1.0, 0.0], vec![0.1, 0.9, 0.0]], None).unwrap();
//! g.threshold = Some(0.5);
//!
//! let r = g.recognize(&[0.9, 0.1, 0.0]).unwrap();
//! assert_eq!(r.class, "wave");
//! assert!(!r.unknown && r.margin > 0.0);
//!
//! let r = g.recognize(&[0.0, 0.0, 1.0]).unwrap();
//! assert!(r.unknown);
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::{cosine_similarity, l2_normalized};
use crossglg_data::tagged::{self, Owned, TaggedError, TaggedFile};

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("gallery: {0}")]
    Invalid(String),
    /// An embedding handed to the gallery (`what`: which one) that it cannot hold or compare.
    #[error("gallery: {what}: {problem}")]
    Embedding {
        what: String,
        problem: EmbeddingProblem,
    },
    #[error("cannot read gallery {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write gallery {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gallery: {0}")]
    File(#[from] TaggedError),
    /// The gallery was enrolled with another model: its embeddings cannot be compared with
    /// this model's.
    #[error("gallery {path}: made by model {gallery} (weights {gallery_hash}), not by this one (weights {model_hash}); enroll into a new gallery")]
    OtherModel {
        path: PathBuf,
        gallery: String,
        gallery_hash: String,
        model_hash: String,
    },
    #[error("gallery {path}: embeddings have width {gallery}, the model's {model}; was it made with another model?")]
    Width {
        path: PathBuf,
        gallery: usize,
        model: usize,
    },
    #[error(
        "gallery {path}: enrolled from layout `{gallery}`, the model takes `{model}`: {difference}"
    )]
    Layout {
        path: PathBuf,
        gallery: String,
        model: String,
        difference: String,
    },
    #[error("cannot lock gallery {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What is wrong with an embedding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbeddingProblem {
    #[error("dimension {got} does not match the gallery's {expected}")]
    Dimension { got: usize, expected: usize },
    #[error("contains NaN or infinity")]
    NotFinite,
    #[error("is all zeros or too large to normalise (length {0})")]
    Degenerate(f64),
}

/// One enrolled exemplar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Index into [`Gallery::classes`].
    pub class: usize,
    /// Where the exemplar came from (a file name), if known.
    #[serde(default)]
    pub source: Option<String>,
}

/// Enrolled classes and their exemplar embeddings (stored L2-normalised).
#[derive(Debug, Clone, PartialEq)]
pub struct Gallery {
    pub dim: usize,
    /// Which model produced the embeddings (name, checkpoint path, ...). Embeddings from another
    /// model are meaningless here.
    pub model_id: String,
    /// A hash of the checkpoint, if the caller has one.
    pub model_hash: Option<String>,
    /// The skeleton layout the embedded sequences were in (its TOML), so the gallery says by
    /// itself what input it expects.
    pub layout_toml: Option<String>,
    pub classes: Vec<String>,
    pub entries: Vec<Entry>,
    embeddings: Vec<Vec<f32>>,
    /// Below this best-class similarity a recognition is marked unknown; `None` never does.
    pub threshold: Option<f32>,
}

/// The answer for one embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recognition {
    /// The most similar class (reported even when `unknown`, for inspection).
    pub class: String,
    pub class_index: usize,
    /// Cosine similarity of the best class's nearest exemplar.
    pub similarity: f32,
    /// Best minus second-best class similarity; with a single class the second best counts
    /// as -1, the lowest cosine similarity.
    pub margin: f32,
    pub unknown: bool,
}

/// The JSON header stored in the safetensors metadata under `crossglg.gallery`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GalleryHeader {
    format: String,
    dim: usize,
    model_id: String,
    #[serde(default)]
    model_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layout_toml: Option<String>,
    classes: Vec<String>,
    entries: Vec<Entry>,
    #[serde(default)]
    threshold: Option<f32>,
}

/// The tagged-file kind and version of galleries (`format` = `crossglg-gallery/1`).
const GALLERY_KIND: &str = "gallery";
const GALLERY_VERSION: u32 = 1;
/// The tag galleries carried in their JSON header before the tagged layer (still written there,
/// so older builds keep reading new galleries).
const LEGACY_FORMAT: &str = "crossglg.gallery.v1";
const META_KEY: &str = "crossglg.gallery";

impl Gallery {
    pub fn new(dim: usize, model_id: &str) -> Self {
        Gallery {
            dim,
            model_id: model_id.to_string(),
            model_hash: None,
            layout_toml: None,
            classes: Vec::new(),
            entries: Vec::new(),
            embeddings: Vec::new(),
            threshold: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored (normalised) exemplar embeddings, one per entry.
    pub fn embeddings(&self) -> &[Vec<f32>] {
        &self.embeddings
    }

    /// Adds exemplars to class `name` (created on first use); `source` is recorded for each.
    /// Returns the class index.
    pub fn enroll(
        &mut self,
        name: &str,
        embeddings: &[Vec<f32>],
        source: Option<&str>,
    ) -> Result<usize, GalleryError> {
        if name.trim().is_empty() {
            return Err(GalleryError::Invalid("class name is empty".into()));
        }
        if embeddings.is_empty() {
            return Err(GalleryError::Invalid(format!(
                "no embeddings given for class `{name}`"
            )));
        }
        for (i, e) in embeddings.iter().enumerate() {
            self.check_embedding(e)
                .map_err(|problem| GalleryError::Embedding {
                    what: format!("class `{name}`, embedding {i}"),
                    problem,
                })?;
        }
        let class = match self.classes.iter().position(|c| c == name) {
            Some(i) => i,
            None => {
                self.classes.push(name.to_string());
                self.classes.len() - 1
            }
        };
        for e in embeddings {
            self.embeddings.push(l2_normalized(e));
            self.entries.push(Entry {
                class,
                source: source.map(str::to_string),
            });
        }
        Ok(class)
    }

    /// Renames class `from` to `to`; merges into `to` when that class exists already. Returns
    /// whether `from` existed.
    pub fn rename_class(&mut self, from: &str, to: &str) -> Result<bool, GalleryError> {
        if to.trim().is_empty() {
            return Err(GalleryError::Invalid("class name is empty".into()));
        }
        let Some(ci) = self.classes.iter().position(|c| c == from) else {
            return Ok(false);
        };
        if from == to {
            return Ok(true);
        }
        match self.classes.iter().position(|c| c == to) {
            None => self.classes[ci] = to.to_string(),
            Some(ti) => {
                for e in &mut self.entries {
                    if e.class == ci {
                        e.class = ti;
                    }
                }
                // `from` has no entries left; remove it (and renumber)
                self.remove_class(from);
            }
        }
        Ok(true)
    }

    /// Exemplars per class, indexed like `classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.classes.len()];
        for e in &self.entries {
            n[e.class] += 1;
        }
        n
    }

    /// Refuses a model whose embeddings this gallery cannot hold: another width, or (when
    /// both sides know it) other weights.
    pub fn check_model(
        &self,
        path: &Path,
        dim: usize,
        model_hash: Option<&str>,
    ) -> Result<(), GalleryError> {
        if self.dim != dim {
            return Err(GalleryError::Width {
                path: path.into(),
                gallery: self.dim,
                model: dim,
            });
        }
        if let (Some(g), Some(m)) = (self.model_hash.as_deref(), model_hash) {
            if g != m {
                return Err(GalleryError::OtherModel {
                    path: path.into(),
                    gallery: self.model_id.clone(),
                    gallery_hash: g.into(),
                    model_hash: m.into(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a model whose input layout is not the one this gallery was enrolled from
    /// (compared by joints; galleries from before layouts were recorded pass).
    pub fn check_layout(
        &self,
        path: &Path,
        layout: &crossglg_data::Layout,
    ) -> Result<(), GalleryError> {
        let Some(toml) = &self.layout_toml else {
            return Ok(());
        };
        let own = crossglg_data::Layout::from_toml_str(toml, &path.display().to_string()).map_err(
            |e| GalleryError::Invalid(format!("{}: stored layout: {e}", path.display())),
        )?;
        let Some(difference) = own.joint_difference(layout) else {
            return Ok(());
        };
        Err(GalleryError::Layout {
            path: path.into(),
            gallery: own.name,
            model: layout.name.clone(),
            difference,
        })
    }

    /// An empty gallery for `embedder` taking sequences in `layout`: its width, weights hash
    /// and layout recorded, so [`Gallery::check_for`] can tell another model later.
    pub fn for_embedder(
        embedder: &(impl crate::embedder::Embedder + ?Sized),
        model_id: &str,
        layout: &crossglg_data::Layout,
        threshold: Option<f32>,
    ) -> Self {
        let mut g = Gallery::new(embedder.dim(), model_id);
        g.model_hash = embedder.model_hash();
        g.layout_toml = Some(layout.to_toml());
        g.threshold = threshold;
        g
    }

    /// Refuses a gallery that `embedder` (taking sequences in `layout`) cannot use: another
    /// width, other weights, another layout. What every user of a gallery file checks.
    pub fn check_for(
        &self,
        path: &Path,
        embedder: &(impl crate::embedder::Embedder + ?Sized),
        layout: &crossglg_data::Layout,
    ) -> Result<(), GalleryError> {
        self.check_model(path, embedder.dim(), embedder.model_hash().as_deref())?;
        self.check_layout(path, layout)
    }

    /// Read-modify-write of the gallery file at `path` under an exclusive lock (on
    /// `<path>.lock`, a file that stays: removing it would let two writers lock different
    /// files), so concurrent writers (several `crossglg enroll`, a server) lose nothing. The
    /// file is read under the lock (or `create`d when missing), `change` applied, and the result
    /// written atomically before the lock is released; on an error (the caller's own kind, or a
    /// gallery error converted into it) nothing is written.
    pub fn update<R, E: From<GalleryError>>(
        path: &Path,
        create: impl FnOnce() -> Gallery,
        change: impl FnOnce(&mut Gallery) -> Result<R, E>,
    ) -> Result<(Gallery, R), E> {
        let _lock = lock_file(path)?;
        let mut g = if path.exists() {
            Gallery::load(path)?
        } else {
            create()
        };
        let r = change(&mut g)?;
        g.save(path)?;
        Ok((g, r))
    }

    /// Removes a class and its exemplars; returns whether it existed.
    pub fn remove_class(&mut self, name: &str) -> bool {
        let Some(ci) = self.classes.iter().position(|c| c == name) else {
            return false;
        };
        let mut keep_e = Vec::new();
        let mut keep_x = Vec::new();
        for (e, x) in self.entries.drain(..).zip(self.embeddings.drain(..)) {
            if e.class != ci {
                let class = if e.class > ci { e.class - 1 } else { e.class };
                keep_e.push(Entry { class, ..e });
                keep_x.push(x);
            }
        }
        self.entries = keep_e;
        self.embeddings = keep_x;
        self.classes.remove(ci);
        true
    }

    fn check_embedding(&self, e: &[f32]) -> Result<(), EmbeddingProblem> {
        if e.len() != self.dim {
            return Err(EmbeddingProblem::Dimension {
                got: e.len(),
                expected: self.dim,
            });
        }
        check_values(e)
    }

    /// Per-class similarity (best exemplar of each class), indexed like `classes`.
    pub fn class_similarities(&self, embedding: &[f32]) -> Result<Vec<f32>, GalleryError> {
        self.check_embedding(embedding)
            .map_err(|problem| GalleryError::Embedding {
                what: "query embedding".into(),
                problem,
            })?;
        let q = l2_normalized(embedding);
        let mut best = vec![f32::NEG_INFINITY; self.classes.len()];
        for (e, x) in self.entries.iter().zip(&self.embeddings) {
            let s = cosine_similarity(x, &q);
            if s > best[e.class] {
                best[e.class] = s;
            }
        }
        Ok(best)
    }

    pub fn recognize(&self, embedding: &[f32]) -> Result<Recognition, GalleryError> {
        self.recognize_excluding(embedding, None)
    }

    /// Recognition with one class left out (used to simulate unknown actions on base classes).
    fn recognize_excluding(
        &self,
        embedding: &[f32],
        exclude: Option<usize>,
    ) -> Result<Recognition, GalleryError> {
        Ok(self.ranked_excluding(embedding, exclude)?.0)
    }

    /// The recognition and every class with its similarity, best first: what a caller that
    /// shows the top classes needs, from one pass over the exemplars.
    pub fn ranked(
        &self,
        embedding: &[f32],
    ) -> Result<(Recognition, Vec<(usize, f32)>), GalleryError> {
        self.ranked_excluding(embedding, None)
    }

    fn ranked_excluding(
        &self,
        embedding: &[f32],
        exclude: Option<usize>,
    ) -> Result<(Recognition, Vec<(usize, f32)>), GalleryError> {
        let sims = self.class_similarities(embedding)?;
        let mut order: Vec<usize> = (0..sims.len())
            .filter(|&c| Some(c) != exclude && sims[c].is_finite())
            .collect();
        if order.is_empty() {
            return Err(GalleryError::Invalid(
                "the gallery has no enrolled classes to recognise against".into(),
            ));
        }
        order.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
        let best = order[0];
        let second = order.get(1).map_or(-1.0, |&c| sims[c]);
        let similarity = sims[best];
        let recognition = Recognition {
            class: self.classes[best].clone(),
            class_index: best,
            similarity,
            margin: similarity - second,
            unknown: self.threshold.is_some_and(|t| similarity < t),
        };
        Ok((
            recognition,
            order.into_iter().map(|c| (c, sims[c])).collect(),
        ))
    }

    /// Saves as safetensors: tensor `embeddings` `[N, D]` f32, and a JSON header (format,
    /// model id/hash, class names, per-entry class and source, threshold) in the metadata
    /// under `crossglg.gallery`. Written atomically.
    pub fn save(&self, path: &Path) -> Result<(), GalleryError> {
        let header = GalleryHeader {
            format: LEGACY_FORMAT.to_string(),
            dim: self.dim,
            model_id: self.model_id.clone(),
            model_hash: self.model_hash.clone(),
            layout_toml: self.layout_toml.clone(),
            classes: self.classes.clone(),
            entries: self.entries.clone(),
            threshold: self.threshold,
        };
        let meta = HashMap::from([(
            META_KEY.to_string(),
            serde_json::to_string(&header).expect("header serialises"),
        )]);
        let flat: Vec<f32> = self.embeddings.concat();
        let tensors = vec![(
            "embeddings",
            Owned::f32(vec![self.embeddings.len(), self.dim], &flat),
        )];
        tagged::write_owned(path, GALLERY_KIND, GALLERY_VERSION, meta, tensors)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self, GalleryError> {
        let bytes = crossglg_data::bounded::read(path, crossglg_data::bounded::DATA_FILE_BYTES)
            .map_err(|source| GalleryError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        // Galleries written before the tagged layer carry their tag in the JSON header.
        let legacy = |meta: &HashMap<String, String>| {
            meta.get(META_KEY)
                .and_then(|t| serde_json::from_str::<GalleryHeader>(t).ok())
                .is_some_and(|h| h.format == LEGACY_FORMAT)
                .then_some(1)
        };
        let f =
            TaggedFile::from_bytes_or_legacy(path, bytes, GALLERY_KIND, GALLERY_VERSION, legacy)?;
        let bad = |message: String| GalleryError::from(f.content_err(message));
        let h: GalleryHeader = f.meta_json(META_KEY)?;
        let (shape, flat) = f.f32("embeddings", 2)?;
        if shape != [h.entries.len(), h.dim] {
            return Err(bad(format!(
                "tensor `embeddings` is {shape:?}, expected [{}, {}] ({} entries)",
                h.entries.len(),
                h.dim,
                h.entries.len()
            )));
        }
        if let Some((i, e)) = h
            .entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.class >= h.classes.len())
        {
            return Err(bad(format!(
                "entry {i} names class {} but there are {} classes",
                e.class,
                h.classes.len()
            )));
        }
        let embeddings: Vec<Vec<f32>> = if h.dim == 0 {
            vec![Vec::new(); h.entries.len()]
        } else {
            flat.chunks(h.dim).map(<[f32]>::to_vec).collect()
        };
        for (i, e) in embeddings.iter().enumerate() {
            if let Err(p) = check_values(e) {
                return Err(bad(format!("stored embedding {i}: {p}")));
            }
        }
        Ok(Gallery {
            dim: h.dim,
            model_id: h.model_id,
            model_hash: h.model_hash,
            layout_toml: h.layout_toml,
            classes: h.classes,
            entries: h.entries,
            embeddings,
            threshold: h.threshold,
        })
    }
}

/// Finite, and with a length that normalises (not zero, not overflowing).
fn check_values(e: &[f32]) -> Result<(), EmbeddingProblem> {
    if e.iter().any(|x| !x.is_finite()) {
        return Err(EmbeddingProblem::NotFinite);
    }
    let norm = e.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    // an f32 normalisation squares the entries: beyond ~1e19 they overflow
    if !(norm > 1e-12 && norm < 1e18) {
        return Err(EmbeddingProblem::Degenerate(norm));
    }
    Ok(())
}

/// An exclusive lock on `<path>.lock`, held until the returned file is dropped.
fn lock_file(path: &Path) -> Result<std::fs::File, GalleryError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let err = |source| GalleryError::Lock {
        path: lock_path.clone(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(err)?;
    f.lock().map_err(err)?;
    Ok(f)
}

/// The outcome of [`calibrate_threshold`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCalibration {
    pub threshold: f32,
    pub target_false_accept_rate: f64,
    /// Fraction of impostor scores at or above the threshold.
    pub false_accept_rate: f64,
    /// Fraction of held-out samples recognised as their own class and not marked unknown,
    /// with the whole base gallery enrolled.
    pub true_accept_rate: f64,
    /// Fraction recognised as their own class ignoring the threshold.
    pub closed_set_accuracy: f64,
    pub impostors: usize,
    pub genuine: usize,
    /// The same measurement at other false-accept targets ([`OPERATING_POINTS`]), so a user can
    /// trade rejection of unseen actions against acceptance of enrolled ones (`recognize --far`).
    #[serde(default)]
    pub operating_points: Vec<OperatingPoint>,
    /// What the thresholds were calibrated on: the base (training) classes, or the
    /// pseudo-novel classes of a validation split, enrolled from one exemplar each.
    #[serde(default)]
    pub calibrated_on: String,
}

/// False-accept targets at which [`calibrate_threshold`] also reports a threshold.
pub const OPERATING_POINTS: [f64; 5] = [0.01, 0.05, 0.1, 0.2, 0.3];

/// One threshold and its rates on the base classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub target_false_accept_rate: f64,
    pub threshold: f32,
    pub false_accept_rate: f64,
    pub true_accept_rate: f64,
}

impl ThresholdCalibration {
    /// The threshold calibrated for a false-accept target (one of the stored operating points,
    /// or the main one).
    pub fn threshold_for(&self, far: f64) -> Option<f32> {
        if (far - self.target_false_accept_rate).abs() < 1e-9 {
            return Some(self.threshold);
        }
        self.operating_points
            .iter()
            .find(|p| (p.target_false_accept_rate - far).abs() < 1e-9)
            .map(|p| p.threshold)
    }

    /// Every false-accept target with a stored threshold, for error messages.
    pub fn targets(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self
            .operating_points
            .iter()
            .map(|p| p.target_false_accept_rate)
            .collect();
        t.push(self.target_false_accept_rate);
        t.sort_by(f64::total_cmp);
        t.dedup();
        t
    }
}

/// Chooses the unknown threshold on *base* classes, so no novel class is used to tune it.
///
/// `gallery` holds exemplars of base classes; `samples`/`labels` are held-out embeddings of
/// those classes (labels are class names in the gallery; not the gallery's exemplars). Each
/// sample is recognised with its own class removed from the gallery: its best similarity is an
/// impostor score, exactly what an unseen action would get. The threshold is the smallest value
/// that keeps the fraction of impostor scores at or above it at most `target_far`; the
/// genuine accept rate at that threshold is reported with the whole gallery enrolled.
pub fn calibrate_threshold(
    gallery: &Gallery,
    samples: &[Vec<f32>],
    labels: &[String],
    target_far: f64,
) -> Result<ThresholdCalibration, GalleryError> {
    if samples.len() != labels.len() || samples.is_empty() {
        return Err(GalleryError::Invalid(format!(
            "threshold calibration needs equal, non-zero numbers of samples and labels (got {} and {})",
            samples.len(),
            labels.len()
        )));
    }
    if gallery.classes.len() < 2 {
        return Err(GalleryError::Invalid(
            "threshold calibration needs a gallery of at least 2 base classes".into(),
        ));
    }
    let mut rows = Vec::with_capacity(samples.len());
    let mut own = Vec::with_capacity(samples.len());
    for (i, (s, l)) in samples.iter().zip(labels).enumerate() {
        let Some(ci) = gallery.classes.iter().position(|c| c == l) else {
            return Err(GalleryError::Invalid(format!(
                "sample {i} has class `{l}`, which is not enrolled in the gallery"
            )));
        };
        rows.push(gallery.class_similarities(s)?);
        own.push(ci);
    }
    calibrate_rows(&rows, &own, target_far)
}

/// [`calibrate_threshold`] on scores already computed: `rows[i][c]` is sample `i`'s score for
/// class `c` (not finite: the class takes no part), `own[i]` its class. A sample's impostor
/// score is its best score among the other classes; it is accepted as genuine when its own
/// class scores best (ties to the lower index) at or above the threshold. What `crossglg eval
/// --open-set --zero-shot` calibrates its thresholds on description similarities with.
pub fn calibrate_rows(
    rows: &[Vec<f32>],
    own: &[usize],
    target_far: f64,
) -> Result<ThresholdCalibration, GalleryError> {
    if rows.len() != own.len() || rows.is_empty() {
        return Err(GalleryError::Invalid(format!(
            "threshold calibration needs equal, non-zero numbers of samples and labels (got {} and {})",
            rows.len(),
            own.len()
        )));
    }
    if !(0.0..=1.0).contains(&target_far) {
        return Err(GalleryError::Invalid(format!(
            "target false-accept rate must be in [0, 1], got {target_far}"
        )));
    }
    // the best class and its score, with one class left out
    let best = |r: &[f32], out: Option<usize>| -> Option<(usize, f32)> {
        r.iter()
            .enumerate()
            .filter(|&(c, x)| Some(c) != out && x.is_finite())
            .fold(None, |b: Option<(usize, f32)>, (c, &x)| match b {
                Some((_, y)) if y >= x => b,
                _ => Some((c, x)),
            })
    };
    let mut impostor = Vec::with_capacity(rows.len());
    let mut genuine = Vec::with_capacity(rows.len());
    for (i, (r, &ci)) in rows.iter().zip(own).enumerate() {
        if ci >= r.len() {
            return Err(GalleryError::Invalid(format!(
                "sample {i} is of class {ci}, but its row scores {} classes",
                r.len()
            )));
        }
        let (Some((_, imp)), Some((b, s))) = (best(r, Some(ci)), best(r, None)) else {
            return Err(GalleryError::Invalid(format!(
                "sample {i}: no other class with a score to calibrate against"
            )));
        };
        impostor.push(imp);
        genuine.push((b == ci, s));
    }
    impostor.sort_by(|a, b| b.total_cmp(a));
    let main = operating_point(&impostor, &genuine, target_far);
    let correct = genuine.iter().filter(|(ok, _)| *ok).count();
    Ok(ThresholdCalibration {
        threshold: main.threshold,
        target_false_accept_rate: target_far,
        false_accept_rate: main.false_accept_rate,
        true_accept_rate: main.true_accept_rate,
        closed_set_accuracy: correct as f64 / genuine.len() as f64,
        impostors: impostor.len(),
        genuine: genuine.len(),
        operating_points: OPERATING_POINTS
            .iter()
            .map(|&far| operating_point(&impostor, &genuine, far))
            .collect(),
        calibrated_on: String::new(),
    })
}

/// The threshold for one false-accept target; `impostor` sorted in descending order.
fn operating_point(impostor: &[f32], genuine: &[(bool, f32)], target_far: f64) -> OperatingPoint {
    // Allow at most floor(far · n) impostors at or above the threshold: put it just above the
    // next impostor score.
    let n = impostor.len();
    let allowed = ((target_far * n as f64).floor() as usize).min(n);
    let threshold = if allowed >= n {
        -1.0
    } else {
        next_up(impostor[allowed])
    };
    let fa = impostor.iter().filter(|&&s| s >= threshold).count();
    let ta = genuine
        .iter()
        .filter(|(ok, s)| *ok && *s >= threshold)
        .count();
    OperatingPoint {
        target_false_accept_rate: target_far,
        threshold,
        false_accept_rate: fa as f64 / n as f64,
        true_accept_rate: ta as f64 / genuine.len() as f64,
    }
}

/// The smallest f32 above `x` (for finite x).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    let bits = x.to_bits();
    let next = if x == 0.0 {
        1
    } else if x > 0.0 {
        bits + 1
    } else {
        bits - 1
    };
    f32::from_bits(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn galleries_from_before_the_tagged_layer_still_load() {
        let mut g = Gallery::new(2, "m");
        g.enroll("a", &[vec![1.0, 0.0]], Some("a.npy")).unwrap();
        // As the writer before the tagged layer saved it: the tag only in the JSON header.
        let header = GalleryHeader {
            format: LEGACY_FORMAT.into(),
            dim: 2,
            model_id: "m".into(),
            model_hash: None,
            layout_toml: None,
            classes: g.classes.clone(),
            entries: g.entries.clone(),
            threshold: None,
        };
        let meta = HashMap::from([(
            META_KEY.to_string(),
            serde_json::to_string(&header).unwrap(),
        )]);
        let bytes: Vec<u8> = g.embeddings[0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 2], &bytes)
                .unwrap();
        let out = safetensors::serialize([("embeddings", view)], Some(meta)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.gallery");
        std::fs::write(&old, out).unwrap();
        assert_eq!(Gallery::load(&old).unwrap(), g);
        // Today's files carry the tag; another kind of tagged file is named for what it is.
        let new = dir.path().join("new.gallery");
        g.save(&new).unwrap();
        assert_eq!(Gallery::load(&new).unwrap(), g);
        let other = dir.path().join("stats.safetensors");
        tagged::write_owned(&other, "base-stats", 1, HashMap::new(), vec![]).unwrap();
        let e = Gallery::load(&other).unwrap_err().to_string();
        assert!(
            e.contains("stats.safetensors") && e.contains("base-stats file"),
            "{e}"
        );
    }
}
