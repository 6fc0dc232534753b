//! Importers for published description sets (under `$CROSSGLG_DATA/text-descriptions`), into
//! the description format, for comparison experiments. The imported text stays on the user's
//! disk; none of it is part of this repository.
//!
//! Body-part texts (head, hand, arm, hip, leg, foot) become joint texts through the layout's
//! parts: head -> `head`, hand -> `hands`, arm -> `arms`, hip -> `torso`, leg -> `legs`,
//! foot -> `feet`. A joint in several parts gets their texts joined ("arm: ... hand: ..."); a
//! joint in none gets the hip (torso) text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossglg_data::Layout;

use crate::format::{ClassDescription, DescriptionFile, Provenance};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("layout `{layout}`: {message}")]
    Layout { layout: String, message: String },
}

/// The six body parts GAP and SkeletonAgent describe, in their order, with the layout part each
/// maps to.
pub const BODY_PARTS: [(&str, &str); 6] = [
    ("head", "head"),
    ("hand", "hands"),
    ("arm", "arms"),
    ("hip", "torso"),
    ("leg", "legs"),
    ("foot", "feet"),
];

fn read(path: &Path) -> Result<String, ImportError> {
    let bytes = crossglg_data::bounded::read(path, crossglg_data::bounded::SMALL_FILE_BYTES)
        .map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&bytes).replace("\r\n", "\n"))
}

fn lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect()
}

/// Joint texts from the six body-part texts (in [`BODY_PARTS`] order).
pub fn parts_to_joints(
    parts: &[String; 6],
    layout: &Layout,
) -> Result<BTreeMap<String, String>, ImportError> {
    for (_, lp) in BODY_PARTS {
        if !layout.parts.contains_key(lp) {
            return Err(ImportError::Layout {
                layout: layout.name.clone(),
                message: format!("has no part `{lp}`, needed to map body-part texts onto joints"),
            });
        }
    }
    let mut out = BTreeMap::new();
    for (j, name) in layout.joints.iter().enumerate() {
        let texts: Vec<String> = BODY_PARTS
            .iter()
            .zip(parts)
            .filter(|((_, lp), _)| layout.parts[*lp].contains(&j))
            .map(|((bp, _), t)| format!("{bp}: {t}"))
            .collect();
        let text = if texts.is_empty() {
            format!("hip: {}", parts[3])
        } else {
            texts.join(" ")
        };
        out.insert(name.clone(), text);
    }
    Ok(out)
}

/// Which GAP set to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapSet {
    /// `sentence_openai_t01.txt` (`name,text`) + `pasta_openai_t01.txt` (`name;part;...`).
    Ntu120,
    /// `ucla_sentence_openai_t01.txt` + `ucla_pasta_openai_t01.txt` (both `;`-separated).
    NwUcla,
}

/// One body-part segment of a GAP pasta line, without a leading "head:" label.
fn strip_part_label(seg: &str, part: &str) -> String {
    let s = seg.trim().trim_end_matches('.').trim();
    let low = s.to_lowercase();
    for label in [format!("{part}s:"), format!("{part}:")] {
        if low.starts_with(&label) {
            return s[label.len()..].trim().to_string();
        }
    }
    s.to_string()
}

/// GAP's sentence and "pasta" (body-part) files: global text from the sentence file, joint texts
/// from the body parts. GAP has no key-joint lists, so key joints come from the lexicon later.
/// `dir` is the `gap/` folder.
pub fn import_gap(
    dir: &Path,
    set: GapSet,
    layout: &Layout,
) -> Result<DescriptionFile, ImportError> {
    let (sentence, pasta, sep, dataset) = match set {
        GapSet::Ntu120 => (
            "sentence_openai_t01.txt",
            "pasta_openai_t01.txt",
            ',',
            "ntu120",
        ),
        GapSet::NwUcla => (
            "ucla_sentence_openai_t01.txt",
            "ucla_pasta_openai_t01.txt",
            ';',
            "nwucla",
        ),
    };
    let sp = dir.join(sentence);
    let pp = dir.join(pasta);
    let s_text = read(&sp)?;
    let p_text = read(&pp)?;
    let s_lines = lines(&s_text);
    let p_lines = lines(&p_text);
    if s_lines.len() != p_lines.len() {
        return Err(ImportError::File {
            path: pp.clone(),
            message: format!(
                "{} classes, but {} has {}",
                p_lines.len(),
                sp.display(),
                s_lines.len()
            ),
        });
    }
    let provenance = Provenance {
        model: "OpenAI GPT (GAP, temperature 0.1)".into(),
        global_prompt_sha256: String::new(),
        local_prompt_sha256: String::new(),
        date: crate::util::today_utc(),
        note: format!(
            "imported from GAP (github.com/MartinXM/GAP text/{sentence}, {pasta}); body-part texts mapped onto joints by layout part"
        ),
    };
    let mut file = DescriptionFile::new(dataset, &layout.name, provenance);
    for (id, ((sl, s), (pl, p))) in s_lines.iter().zip(&p_lines).enumerate() {
        let Some((name, global)) = s.split_once(sep) else {
            return Err(ImportError::Line {
                path: sp.clone(),
                line: *sl,
                message: format!("expected `name{sep}description`"),
            });
        };
        let segs: Vec<&str> = p.split(';').collect();
        if segs.len() != 7 {
            return Err(ImportError::Line {
                path: pp.clone(),
                line: *pl,
                message: format!(
                    "expected a name and 6 body parts separated by `;`, found {} fields",
                    segs.len()
                ),
            });
        }
        if segs[0].trim() != name.trim() {
            return Err(ImportError::Line {
                path: pp.clone(),
                line: *pl,
                message: format!(
                    "class `{}` where {} has `{}`",
                    segs[0].trim(),
                    sp.display(),
                    name.trim()
                ),
            });
        }
        let parts: [String; 6] =
            std::array::from_fn(|k| strip_part_label(segs[k + 1], BODY_PARTS[k].0));
        file.classes.push(ClassDescription {
            id,
            name: name.trim().to_string(),
            global: global.trim().to_string(),
            key_joints: Vec::new(),
            local: parts_to_joints(&parts, layout)?,
        });
    }
    Ok(file)
}

/// One SkeletonAgent dialogue: the answers of its five rounds.
fn answers(text: &str) -> Vec<String> {
    text.split("\n====")
        .map(|block| {
            block
                .split_once("Answer:")
                .map(|(_, a)| a.trim().trim_start_matches('=').trim().to_string())
                .unwrap_or_default()
        })
        .filter(|a| !a.is_empty())
        .collect()
}

/// SkeletonAgent's GPT-4o dialogues (`nturgbd_120/` or `nturgbd_60/`): round 1 is the global
/// text, round 2 the body-part texts, round 3 the critical joints (1-based NTU indices, which
/// become `key_joints`), round 4 texts for some of those joints (used for them instead of the
/// body-part text). Needs an NTU-order 25-joint layout. `dir` is the `skeletonagent/` folder,
/// `classes` 120 or 60.
pub fn import_skeletonagent(
    dir: &Path,
    classes: usize,
    layout: &Layout,
) -> Result<DescriptionFile, ImportError> {
    if layout.num_joints() != 25 {
        return Err(ImportError::Layout {
            layout: layout.name.clone(),
            message:
                "SkeletonAgent's joint indices are NTU's 25 Kinect v2 joints; use layout ntu25"
                    .into(),
        });
    }
    let sub = match classes {
        120 => "nturgbd_120",
        60 => "nturgbd_60",
        n => {
            return Err(ImportError::File {
                path: dir.into(),
                message: format!("SkeletonAgent has 60 or 120 classes, not {n}"),
            })
        }
    };
    let label_path = dir.join("label_map").join(format!("{sub}.txt"));
    let labels_text = read(&label_path)?;
    let labels: Vec<&str> = lines(&labels_text).into_iter().map(|(_, l)| l).collect();
    if labels.len() != classes {
        return Err(ImportError::File {
            path: label_path,
            message: format!("{} class names, expected {classes}", labels.len()),
        });
    }
    let folder = dir.join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|source| ImportError::Read {
            path: folder.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let provenance = Provenance {
        model: "gpt-4o (SkeletonAgent)".into(),
        global_prompt_sha256: String::new(),
        local_prompt_sha256: String::new(),
        date: crate::util::today_utc(),
        note: format!(
            "imported from SkeletonAgent (github.com/firework8/SkeletonAgent) {sub}: round 1 global, round 3 key joints, round 4 joint texts, round 2 body parts for the other joints"
        ),
    };
    let dataset = if classes == 120 { "ntu120" } else { "ntu60" };
    let mut file = DescriptionFile::new(dataset, &layout.name, provenance);
    for (id, label) in labels.iter().enumerate() {
        let prefix = format!("{:03}_", id + 1);
        let path = files
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .ok_or_else(|| ImportError::File {
                path: folder.clone(),
                message: format!("no file {prefix}*.txt for class `{label}`"),
            })?;
        let bad = |message: String| ImportError::File {
            path: path.clone(),
            message,
        };
        let ans = answers(&read(path)?);
        if ans.len() < 4 {
            return Err(bad(format!(
                "found {} answered rounds, expected 5",
                ans.len()
            )));
        }
        let mut parts: [String; 6] = Default::default();
        for line in ans[1].lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim().to_lowercase();
            if let Some(p) = BODY_PARTS
                .iter()
                .position(|(bp, _)| *bp == k || format!("{bp}s") == k)
            {
                parts[p] = v.trim().trim_end_matches('.').trim().to_string();
            }
        }
        if let Some(p) = parts.iter().position(String::is_empty) {
            return Err(bad(format!("round 2 has no `{}` line", BODY_PARTS[p].0)));
        }
        let mut key_joints = Vec::new();
        for tok in ans[2]
            .split([',', ' ', '\n'])
            .filter(|t| !t.trim().is_empty())
        {
            let n: usize = tok
                .trim()
                .parse()
                .map_err(|_| bad(format!("round 3: `{tok}` is not a joint number")))?;
            let name = layout
                .joints
                .get(n.wrapping_sub(1))
                .ok_or_else(|| bad(format!("round 3: joint {n} outside 1..=25")))?;
            if !key_joints.contains(name) {
                key_joints.push(name.clone());
            }
        }
        let mut local = parts_to_joints(&parts, layout).map_err(|e| bad(e.to_string()))?;
        for line in ans[3].lines() {
            // "7-left wrist: Bends to adjust cup angle."
            let Some((head, text)) = line.split_once(':') else {
                continue;
            };
            let Some((num, _)) = head.split_once('-') else {
                continue;
            };
            let Ok(n) = num.trim().parse::<usize>() else {
                continue;
            };
            if let Some(name) = layout.joints.get(n.wrapping_sub(1)) {
                local.insert(name.clone(), text.trim().to_string());
            }
        }
        file.classes.push(ClassDescription {
            id,
            name: label.to_string(),
            global: ans[0].clone(),
            key_joints,
            local,
        });
    }
    Ok(file)
}
