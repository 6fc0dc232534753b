//! Pictures for evaluation and inspection, as SVG or PNG (chosen by the file extension):
//! joint importance on a skeleton, a confusion-matrix heatmap, training curves from a metrics
//! JSON-lines file, and a 2-D PCA map of exemplar and query embeddings.
//!
//! Text is laid out and, for PNG, rasterised with a font bundled in the binary (DejaVu Sans
//! Mono, `assets/`), so pictures need no system fonts or fontconfig. SVG files name the generic
//! `sans-serif` family; viewers substitute their own font. Files are written to a temporary
//! name and renamed.

use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Once;

use crossglg_data::{Layout, Skeleton};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot plot to {path}: the file name must end in .svg or .png")]
    Format { path: PathBuf },
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Metrics {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("plot input: {0}")]
    Invalid(String),
}

type DrawResult = Result<(), Box<dyn Error>>;

fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure would leave text unrendered,
        // which the drawing calls then report as an error.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

enum Kind {
    Svg,
    Png,
}

fn kind_of(path: &Path) -> Result<Kind, PlotError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok(Kind::Svg),
        Some("png") => Ok(Kind::Png),
        _ => Err(PlotError::Format {
            path: path.to_path_buf(),
        }),
    }
}

/// Runs `$draw` (a closure taking `&DrawingArea<_, Shift>`) on an SVG or bitmap backend,
/// depending on the extension, written atomically.
macro_rules! render {
    ($path:expr, $size:expr, $draw:expr) => {{
        let path: &Path = $path;
        ensure_font();
        let kind = kind_of(path)?;
        // The atomic writer keeps the extension on its temporary file; the PNG encoder picks
        // the format from it.
        let result: DrawResult = crossglg_data::atomic::write_atomic_with(path, |tmp: &Path| {
            match kind {
                Kind::Svg => {
                    let root = SVGBackend::new(tmp, $size).into_drawing_area();
                    root.fill(&WHITE)?;
                    ($draw)(&root)?;
                    root.present()?;
                }
                Kind::Png => {
                    let root = BitMapBackend::new(tmp, $size).into_drawing_area();
                    root.fill(&WHITE)?;
                    ($draw)(&root)?;
                    root.present()?;
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            return Err(PlotError::Draw {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
        }
        Ok(())
    }};
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// White → blue for `v` in [0, 1].
fn blues(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0))
}

/// Blue → yellow → red for `v` in [0, 1].
fn heat(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let (a, b, t) = if v < 0.5 {
        ((49.0, 54.0, 149.0), (254.0, 224.0, 144.0), v * 2.0)
    } else {
        ((254.0, 224.0, 144.0), (165.0, 0.0, 38.0), v * 2.0 - 1.0)
    };
    let l = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    RGBColor(l(a.0, b.0), l(a.1, b.1), l(a.2, b.2))
}

// ---------------------------------------------------------------- confusion matrix

/// A heatmap of `confusion[true][predicted]`, each row normalised to the fraction of its class
/// (counts printed in the cells when there is room).
pub fn plot_confusion(
    path: &Path,
    classes: &[String],
    confusion: &[Vec<usize>],
    title: &str,
) -> Result<(), PlotError> {
    let k = classes.len();
    if k == 0 || confusion.len() != k || confusion.iter().any(|r| r.len() != k) {
        return Err(PlotError::Invalid(format!(
            "confusion matrix must be {k}×{k} for {k} classes"
        )));
    }
    let cell = (640 / k as i32).clamp(10, 48);
    let label_w = 40
        + 7 * classes
            .iter()
            .map(|c| truncate(c, 24).chars().count())
            .max()
            .unwrap_or(0) as i32;
    let (left, top) = (label_w + 10, 70);
    let w = (left + cell * k as i32 + 90).max(40 + 11 * title.chars().count() as i32);
    let h = top + cell * k as i32 + 50;
    render!(path, (w as u32, h as u32), |root: &DrawingArea<
        _,
        Shift,
    >|
     -> DrawResult {
        root.draw(&Text::new(title.to_string(), (left, 12), font(18.0)))?;
        root.draw(&Text::new(
            "predicted →".to_string(),
            (left, 40),
            font(12.0),
        ))?;
        for (i, row) in confusion.iter().enumerate() {
            let n: usize = row.iter().sum();
            let y = top + i as i32 * cell;
            root.draw(&Text::new(
                format!("{i} {}", truncate(&classes[i], 24)),
                (left - 6, y + cell / 2),
                font(11.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            for (j, &c) in row.iter().enumerate() {
                let x = left + j as i32 * cell;
                let v = if n > 0 { c as f64 / n as f64 } else { 0.0 };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    blues(v).filled(),
                ))?;
                if cell >= 22 && c > 0 {
                    let color = if v > 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        c.to_string(),
                        (x + cell / 2, y + cell / 2),
                        font(10.0)
                            .color(&color)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                }
            }
        }
        let step = ((k as f64 / 25.0).ceil() as usize).max(1);
        for j in (0..k).step_by(step) {
            root.draw(&Text::new(
                j.to_string(),
                (left + j as i32 * cell + cell / 2, top - 4),
                font(10.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(left, top), (left + cell * k as i32, top + cell * k as i32)],
            BLACK.stroke_width(1),
        ))?;
        // Colour bar: fraction of the true class.
        let bx = left + cell * k as i32 + 20;
        let bh = cell * k as i32;
        for s in 0..bh {
            let v = 1.0 - s as f64 / bh.max(1) as f64;
            root.draw(&Rectangle::new(
                [(bx, top + s), (bx + 14, top + s + 1)],
                blues(v).filled(),
            ))?;
        }
        root.draw(&Text::new(
            "1".to_string(),
            (bx + 18, top),
            font(10.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        root.draw(&Text::new(
            "0".to_string(),
            (bx + 18, top + bh),
            font(10.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        Ok(())
    })
}

/// [`plot_confusion`] of an evaluation report.
pub fn plot_report_confusion(
    path: &Path,
    report: &crossglg_infer::report::EvalReport,
) -> Result<(), PlotError> {
    let title = format!(
        "{}: top-1 {:.1} % ({} / {})",
        report.method,
        100.0 * report.accuracy,
        report.correct,
        report.queries
    );
    plot_confusion(path, &report.classes, &report.confusion, &title)
}

// ---------------------------------------------------------------- training curves

/// Numeric fields of a metrics JSON-lines file, against `step` (or `epoch`, or the line number
/// when neither is present).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    pub x_name: String,
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
}

/// Reads one JSON object per line; every numeric top-level field except `step` and `epoch`
/// becomes a series. Blank lines are skipped; non-numeric fields are ignored.
pub fn read_metrics_jsonl(path: &Path) -> Result<MetricSeries, PlotError> {
    let text =
        crossglg_data::bounded::read_to_string(path, crossglg_data::bounded::SMALL_FILE_BYTES)
            .map_err(|source| PlotError::Read {
                path: path.to_path_buf(),
                source,
            })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| PlotError::Metrics {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("not JSON: {e}"),
        })?;
        let serde_json::Value::Object(m) = v else {
            return Err(PlotError::Metrics {
                path: path.to_path_buf(),
                line: i + 1,
                message: "expected a JSON object".into(),
            });
        };
        rows.push((i + 1, m));
    }
    let has = |k: &str| {
        rows.iter()
            .any(|(_, m)| m.get(k).is_some_and(|v| v.is_number()))
    };
    let x_name = if has("step") {
        "step"
    } else if has("epoch") {
        "epoch"
    } else {
        "line"
    };
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (line, m) in &rows {
        let x = match x_name {
            "line" => *line as f64,
            k => match m.get(k).and_then(|v| v.as_f64()) {
                Some(x) => x,
                None => continue,
            },
        };
        for (k, v) in m {
            if k == "step" || k == "epoch" {
                continue;
            }
            if let Some(y) = v.as_f64().filter(|y| y.is_finite()) {
                series.entry(k.clone()).or_default().push((x, y));
            }
        }
    }
    if series.is_empty() {
        return Err(PlotError::Metrics {
            path: path.to_path_buf(),
            line: 0,
            message: "no numeric fields to plot".into(),
        });
    }
    Ok(MetricSeries {
        x_name: x_name.to_string(),
        series,
    })
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = lo.abs().max(1.0) * 0.05;
        (lo - d, hi + d)
    } else {
        let d = (hi - lo) * 0.05;
        (lo - d, hi + d)
    }
}

/// One panel per metric, stacked, sharing the x axis.
pub fn plot_metrics(path: &Path, metrics: &MetricSeries, title: &str) -> Result<(), PlotError> {
    let n = metrics.series.len();
    if n == 0 {
        return Err(PlotError::Invalid("no metric series".into()));
    }
    let (x0, x1) = metrics
        .series
        .values()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (x0, x1) = padded(x0, x1);
    let h = 40 + 200 * n as u32;
    render!(
        path,
        (900u32, h),
        |root: &DrawingArea<_, Shift>| -> DrawResult {
            let body = root.titled(title, font(18.0))?;
            let panels = body.split_evenly((n, 1));
            for (i, (panel, (name, pts))) in panels.iter().zip(&metrics.series).enumerate() {
                let (y0, y1) = pts
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                        (a.min(p.1), b.max(p.1))
                    });
                let (y0, y1) = padded(y0, y1);
                let mut chart = ChartBuilder::on(panel)
                    .margin(8)
                    .x_label_area_size(28)
                    .y_label_area_size(70)
                    .caption(name, font(14.0))
                    .build_cartesian_2d(x0..x1, y0..y1)?;
                chart
                    .configure_mesh()
                    .x_desc(metrics.x_name.as_str())
                    .label_style(font(11.0))
                    .light_line_style(RGBColor(235, 235, 235))
                    .draw()?;
                let color = Palette99::pick(i).to_rgba();
                chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?;
                if pts.len() <= 60 {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
                }
            }
            Ok(())
        }
    )
}

/// Training curves from a metrics JSON-lines file ([`read_metrics_jsonl`] + [`plot_metrics`]).
/// `only`: the series to draw (empty: all); an unknown name is an error listing the known ones.
pub fn plot_training_curves(
    path: &Path,
    metrics_jsonl: &Path,
    only: &[String],
) -> Result<(), PlotError> {
    let mut m = read_metrics_jsonl(metrics_jsonl)?;
    if !only.is_empty() {
        if let Some(missing) = only.iter().find(|k| !m.series.contains_key(*k)) {
            return Err(PlotError::Invalid(format!(
                "{} has no metric `{missing}` (it has: {})",
                metrics_jsonl.display(),
                m.series.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        m.series.retain(|k, _| only.contains(k));
    }
    let title = format!(
        "{}",
        metrics_jsonl
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    );
    plot_metrics(path, &m, &title)
}

// ---------------------------------------------------------------- joint importance

/// Joint positions `(x, y)` of one person in one frame (x right, y up: a front view).
pub fn pose_from_skeleton(
    sk: &Skeleton,
    person: usize,
    frame: usize,
) -> Result<Vec<[f32; 2]>, PlotError> {
    if person >= sk.persons || frame >= sk.frames || sk.channels < 2 {
        return Err(PlotError::Invalid(format!(
            "skeleton {:?} has no person {person} / frame {frame} with x and y",
            sk.shape()
        )));
    }
    Ok((0..sk.joints)
        .map(|v| [sk.get(person, frame, v, 0), sk.get(person, frame, v, 1)])
        .collect())
}

/// A readable 2-D drawing of any layout's joint tree when no real pose is at hand: roots
/// (joints without a parent) at the top, each joint one level below its parent, leaves spread
/// left to right in joint order and parents centred over their children.
pub fn tree_pose(layout: &Layout) -> Vec<[f32; 2]> {
    let v = layout.num_joints();
    let mut children = vec![Vec::new(); v];
    let mut has_parent = vec![false; v];
    for &(c, p) in &layout.edges {
        if c < v && p < v && !has_parent[c] {
            children[p].push(c);
            has_parent[c] = true;
        }
    }
    let mut pos = vec![[0f32; 2]; v];
    let mut placed = vec![false; v];
    let mut next_x = 0f32;
    // Iterative post-order so deep layouts cannot overflow the stack.
    for root in (0..v).filter(|&j| !has_parent[j]) {
        let mut stack: VecDeque<(usize, usize, bool)> = VecDeque::from([(root, 0, false)]);
        while let Some((j, depth, expanded)) = stack.pop_back() {
            if placed[j] {
                continue;
            }
            let kids: Vec<usize> = children[j]
                .iter()
                .copied()
                .filter(|&c| !placed[c])
                .collect();
            if expanded || kids.is_empty() {
                let x = if kids.is_empty() && !expanded {
                    next_x += 1.0;
                    next_x - 1.0
                } else {
                    let xs: Vec<f32> = children[j]
                        .iter()
                        .filter(|&&c| placed[c])
                        .map(|&c| pos[c][0])
                        .collect();
                    if xs.is_empty() {
                        next_x += 1.0;
                        next_x - 1.0
                    } else {
                        xs.iter().sum::<f32>() / xs.len() as f32
                    }
                };
                pos[j] = [x, -(depth as f32)];
                placed[j] = true;
            } else {
                stack.push_back((j, depth, true));
                for &c in kids.iter().rev() {
                    stack.push_back((c, depth + 1, false));
                }
            }
        }
    }
    pos
}

/// A front-view standing pose (y up, the person's left on the viewer's right) for joints named
/// as in the shipped layouts (ntu25, nwucla20, msr20, coco17, mediapipe33). Only a drawing aid.
const REST_POSE: &[(&str, [f32; 2])] = &[
    ("spine_base", [0.0, 0.0]),
    ("hip_center", [0.0, 0.0]),
    ("spine_mid", [0.0, 0.25]),
    ("spine", [0.0, 0.25]),
    ("spine_shoulder", [0.0, 0.5]),
    ("shoulder_center", [0.0, 0.5]),
    ("neck", [0.0, 0.58]),
    ("head", [0.0, 0.74]),
    ("nose", [0.0, 0.7]),
    ("left_eye_inner", [0.015, 0.73]),
    ("left_eye", [0.03, 0.73]),
    ("left_eye_outer", [0.045, 0.73]),
    ("left_ear", [0.07, 0.71]),
    ("mouth_left", [0.02, 0.66]),
    ("left_shoulder", [0.18, 0.5]),
    ("left_elbow", [0.25, 0.25]),
    ("left_wrist", [0.3, 0.02]),
    ("left_hand", [0.31, -0.04]),
    ("left_hand_tip", [0.32, -0.12]),
    ("left_thumb", [0.26, -0.07]),
    ("left_pinky", [0.34, -0.09]),
    ("left_index", [0.31, -0.11]),
    ("left_hip", [0.1, 0.0]),
    ("left_knee", [0.11, -0.42]),
    ("left_ankle", [0.12, -0.82]),
    ("left_foot", [0.16, -0.88]),
    ("left_heel", [0.11, -0.87]),
    ("left_foot_index", [0.17, -0.9]),
];

/// [`REST_POSE`] for `layout` when every joint name is known (`right_*` mirrors `left_*`).
pub fn rest_pose(layout: &Layout) -> Option<Vec<[f32; 2]>> {
    layout
        .joints
        .iter()
        .map(|name| {
            let (key, mirror) = match name.strip_prefix("right_") {
                Some(rest) => (format!("left_{rest}"), true),
                None => match name.strip_prefix("mouth_right") {
                    Some(_) => ("mouth_left".to_string(), true),
                    None => (name.clone(), false),
                },
            };
            REST_POSE
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, p)| if mirror { [-p[0], p[1]] } else { *p })
        })
        .collect()
}

/// Joint weights drawn on a skeleton: bones as grey lines, joints as circles whose size and
/// colour grow with the weight (scaled to the largest weight); up to five of the heaviest joints
/// (at least a quarter of the largest weight) are named. `pose` gives `(x, y)` per joint (y up); without it, [`rest_pose`] is used when it
/// knows every joint name, else [`tree_pose`].
pub fn plot_joint_importance(
    path: &Path,
    layout: &Layout,
    pose: Option<&[[f32; 2]]>,
    weights: &[f32],
    title: &str,
) -> Result<(), PlotError> {
    let v = layout.num_joints();
    if weights.len() != v {
        return Err(PlotError::Invalid(format!(
            "{} weights for layout `{}` with {v} joints",
            weights.len(),
            layout.name
        )));
    }
    if weights.iter().any(|w| !w.is_finite()) {
        return Err(PlotError::Invalid(
            "joint weights contain NaN or infinity".into(),
        ));
    }
    let owned;
    let pose = match pose {
        Some(p) if p.len() == v => p,
        Some(p) => {
            return Err(PlotError::Invalid(format!(
                "pose has {} joints, layout `{}` has {v}",
                p.len(),
                layout.name
            )))
        }
        None => {
            owned = rest_pose(layout).unwrap_or_else(|| tree_pose(layout));
            &owned
        }
    };
    let (w, h) = (640i32, 720i32);
    let (mx0, mx1, my0, my1) = pose.iter().fold(
        (
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ),
        |(a, b, c, d), p| (a.min(p[0]), b.max(p[0]), c.min(p[1]), d.max(p[1])),
    );
    let span = (mx1 - mx0).max(my1 - my0).max(1e-6);
    let (pad, top) = (70f32, 60f32);
    let scale = ((w as f32 - 2.0 * pad).min(h as f32 - top - pad)) / span;
    let cx = (mx0 + mx1) / 2.0;
    let cy = (my0 + my1) / 2.0;
    let to_px = |p: [f32; 2]| -> (i32, i32) {
        (
            (w as f32 / 2.0 + (p[0] - cx) * scale).round() as i32,
            (top + (h as f32 - top) / 2.0 - (p[1] - cy) * scale).round() as i32,
        )
    };
    let wmax = weights.iter().copied().fold(0f32, f32::max);
    let norm: Vec<f64> = weights
        .iter()
        .map(|&x| {
            if wmax > 0.0 {
                (x / wmax).max(0.0) as f64
            } else {
                0.0
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    render!(path, (w as u32, h as u32), |root: &DrawingArea<
        _,
        Shift,
    >|
     -> DrawResult {
        root.draw(&Text::new(title.to_string(), (16, 14), font(18.0)))?;
        for &(a, b) in &layout.edges {
            root.draw(&PathElement::new(
                vec![to_px(pose[a]), to_px(pose[b])],
                RGBColor(150, 150, 150).stroke_width(3),
            ))?;
        }
        // Light joints first so heavy ones stay on top.
        for &j in order.iter().rev() {
            let r = (4.0 + 14.0 * norm[j]).round() as i32;
            root.draw(&Circle::new(to_px(pose[j]), r, heat(norm[j]).filled()))?;
            root.draw(&Circle::new(to_px(pose[j]), r, BLACK.stroke_width(1)))?;
        }
        // Name the heaviest joints only, so ties among light joints do not clutter the picture.
        for &j in order.iter().take(5).filter(|&&j| norm[j] >= 0.25) {
            let (x, y) = to_px(pose[j]);
            root.draw(&Text::new(
                format!("{} {:.2}", layout.joints[j], weights[j]),
                (x + 20, y),
                font(11.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- PCA map

/// Projects rows onto their first two principal components (power iteration with deflation on
/// the covariance matrix; deterministic start). Returns one `[pc1, pc2]` per row.
pub fn pca_2d(rows: &[Vec<f32>]) -> Result<Vec<[f32; 2]>, PlotError> {
    let n = rows.len();
    let d = rows.first().map_or(0, |r| r.len());
    if rows.iter().flatten().any(|x| !x.is_finite()) {
        return Err(PlotError::Invalid(
            "embeddings contain NaN or infinity".into(),
        ));
    }
    if n == 0 || d == 0 || rows.iter().any(|r| r.len() != d) {
        return Err(PlotError::Invalid(
            "PCA needs non-empty rows of one dimension".into(),
        ));
    }
    let mut mean = vec![0f64; d];
    for r in rows {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += x as f64 / n as f64;
        }
    }
    let centred: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect())
        .collect();
    let mut cov = vec![0f64; d * d];
    for r in &centred {
        for i in 0..d {
            let ri = r[i];
            for (c, &rj) in cov[i * d..(i + 1) * d].iter_mut().zip(r) {
                *c += ri * rj;
            }
        }
    }
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for k in 0..2.min(d) {
        // A start vector that is not orthogonal to typical leading components.
        let mut v: Vec<f64> = (0..d)
            .map(|i| 1.0 + ((i * 7 + k * 3) % 5) as f64 * 0.1)
            .collect();
        for _ in 0..300 {
            let mut w: Vec<f64> = (0..d)
                .map(|i| {
                    cov[i * d..(i + 1) * d]
                        .iter()
                        .zip(&v)
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect();
            for c in &comps {
                let p: f64 = w.iter().zip(c).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(c).for_each(|(a, b)| *a -= p * b);
            }
            let nw = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if nw < 1e-30 {
                break;
            }
            w.iter_mut().for_each(|x| *x /= nw);
            let diff: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = w;
            if diff < 1e-10 {
                break;
            }
        }
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
        v.iter_mut().for_each(|x| *x /= nv);
        comps.push(v);
    }
    Ok(centred
        .iter()
        .map(|r| {
            let p = |c: Option<&Vec<f64>>| {
                c.map_or(0.0, |c| {
                    r.iter().zip(c).map(|(a, b)| a * b).sum::<f64>() as f32
                })
            };
            [p(comps.first()), p(comps.get(1))]
        })
        .collect())
}

/// Exemplars (large triangles) and queries (dots) of each class on their first two principal
/// components; classes share a colour. `labels` index `classes`.
pub fn plot_embedding_map(
    path: &Path,
    exemplars: &[Vec<f32>],
    exemplar_labels: &[usize],
    queries: &[Vec<f32>],
    query_labels: &[usize],
    classes: &[String],
    title: &str,
) -> Result<(), PlotError> {
    if exemplars.len() != exemplar_labels.len() || queries.len() != query_labels.len() {
        return Err(PlotError::Invalid("each embedding needs one label".into()));
    }
    if let Some(l) = exemplar_labels
        .iter()
        .chain(query_labels)
        .find(|&&l| l >= classes.len())
    {
        return Err(PlotError::Invalid(format!(
            "label {l} outside the {} classes",
            classes.len()
        )));
    }
    let all: Vec<Vec<f32>> = exemplars.iter().chain(queries).cloned().collect();
    let proj = pca_2d(&all)?;
    let (ex, qs) = proj.split_at(exemplars.len());
    let (x0, x1, y0, y1) = proj.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), p| {
            (
                a.min(p[0] as f64),
                b.max(p[0] as f64),
                c.min(p[1] as f64),
                d.max(p[1] as f64),
            )
        },
    );
    let (x0, x1) = padded(x0, x1);
    let (y0, y1) = padded(y0, y1);
    let legend = classes.len() <= 20;
    render!(
        path,
        (900u32, 760u32),
        |root: &DrawingArea<_, Shift>| -> DrawResult {
            let mut chart = ChartBuilder::on(root)
                .caption(title, font(18.0))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("PC 1")
                .y_desc("PC 2")
                .label_style(font(11.0))
                .light_line_style(RGBColor(240, 240, 240))
                .draw()?;
            let color = |l: usize| Palette99::pick(l).to_rgba();
            chart.draw_series(qs.iter().zip(query_labels).map(|(p, &l)| {
                Circle::new((p[0] as f64, p[1] as f64), 3, color(l).mix(0.6).filled())
            }))?;
            for (c, name) in classes.iter().enumerate() {
                let pts: Vec<(f64, f64)> = ex
                    .iter()
                    .zip(exemplar_labels)
                    .filter(|(_, &l)| l == c)
                    .map(|(p, _)| (p[0] as f64, p[1] as f64))
                    .collect();
                let s = chart.draw_series(
                    pts.iter()
                        .map(|&p| TriangleMarker::new(p, 9, color(c).filled())),
                )?;
                if legend {
                    let col = color(c);
                    s.label(truncate(name, 28))
                        .legend(move |(x, y)| TriangleMarker::new((x + 6, y), 6, col.filled()));
                }
            }
            if legend {
                chart
                    .configure_series_labels()
                    .label_font(font(11.0))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()?;
            }
            Ok(())
        }
    )
}

// ---------------------------------------------------------------- JID against key-joint targets

/// JID's joint importance on held-out classes next to their key-joint targets.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JidTargets {
    pub classes: Vec<String>,
    pub joints: Vec<String>,
    /// Per class: the key-joint target from its description.
    pub targets: Vec<Vec<f32>>,
    /// Per class: JID's output averaged over the class's samples.
    pub outputs: Vec<Vec<f32>>,
    /// Per class: mean over samples of `KL(target ‖ JID output)`.
    pub kl_model: Vec<f64>,
    /// Per class: `KL(target ‖ uniform)`, what an untrained JID scores.
    pub kl_uniform: Vec<f64>,
}

/// `KL(p ‖ q)` in nats (terms with `p = 0` are 0).
pub fn kl(p: &[f32], q: &[f32]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(&a, &b)| a as f64 * ((a as f64) / (b as f64).max(1e-12)).ln())
        .sum()
}

/// Two heatmaps over joints for each class, the target above the JID output, each row scaled
/// to its own largest value; the KL of each against the target is printed beside it.
pub fn plot_jid_targets(path: &Path, s: &JidTargets, title: &str) -> Result<(), PlotError> {
    let (k, v) = (s.classes.len(), s.joints.len());
    if k == 0
        || v == 0
        || s.targets.len() != k
        || s.outputs.len() != k
        || s.targets.iter().chain(&s.outputs).any(|r| r.len() != v)
    {
        return Err(PlotError::Invalid(format!(
            "need {k} target and output rows of {v} joints"
        )));
    }
    let cell = (900 / v as i32).clamp(12, 36);
    let label_w = 30
        + 7 * s
            .classes
            .iter()
            .map(|c| truncate(c, 22).chars().count())
            .max()
            .unwrap_or(0) as i32;
    let (left, top) = (label_w + 70, 120);
    let row_h = 18;
    let w = left + cell * v as i32 + 260;
    let h = top + k as i32 * (2 * row_h + 14) + 20;
    render!(path, (w as u32, h as u32), |root: &DrawingArea<
        _,
        Shift,
    >|
     -> DrawResult {
        root.draw(&Text::new(title.to_string(), (12, 12), font(17.0)))?;
        root.draw(&Text::new(
            "rows: key-joint target from the description / JID output (mean over the class's samples); each row scaled to its maximum".to_string(),
            (12, 38),
            font(11.0),
        ))?;
        for (j, name) in s.joints.iter().enumerate() {
            let x = left + j as i32 * cell + cell / 2;
            root.draw(&Text::new(
                truncate(name, 14),
                (x, top - 6),
                font(9.0)
                    .pos(Pos::new(HPos::Left, VPos::Center))
                    .transform(FontTransform::Rotate270),
            ))?;
        }
        let mut y = top;
        for c in 0..k {
            root.draw(&Text::new(
                truncate(&s.classes[c], 22),
                (12, y + row_h),
                font(11.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            for (r, (what, row)) in [("target", &s.targets[c]), ("JID", &s.outputs[c])]
                .into_iter()
                .enumerate()
            {
                let yy = y + r as i32 * row_h;
                root.draw(&Text::new(
                    what.to_string(),
                    (left - 6, yy + row_h / 2),
                    font(10.0).pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
                let mx = row.iter().copied().fold(0f32, f32::max).max(1e-12);
                for (j, &x) in row.iter().enumerate() {
                    let x0 = left + j as i32 * cell;
                    root.draw(&Rectangle::new(
                        [(x0, yy), (x0 + cell - 1, yy + row_h - 1)],
                        heat((x / mx) as f64).filled(),
                    ))?;
                }
            }
            root.draw(&Text::new(
                format!(
                    "KL to target: JID {:.3}, uniform {:.3}",
                    s.kl_model[c], s.kl_uniform[c]
                ),
                (left + cell * v as i32 + 10, y + row_h),
                font(10.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            y += 2 * row_h + 14;
        }
        Ok(())
    })
}
