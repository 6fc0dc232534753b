//! The description file: one versioned JSON file per dataset and layout holding, for every
//! class, a global description, its key joints and one motion description per joint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crossglg_data::Layout;
use serde::{Deserialize, Serialize};

use crossglg_data::atomic::write_atomic;

/// The value of the `format` field this version reads and writes.
pub const FORMAT: &str = "crossglg-descriptions/1";

/// Where the texts came from. Every field is free text except the hashes, which are the
/// SHA-256 (hex) of the prompt templates that produced the answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub model: String,
    #[serde(default)]
    pub global_prompt_sha256: String,
    #[serde(default)]
    pub local_prompt_sha256: String,
    /// YYYY-MM-DD.
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub note: String,
}

/// The texts of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassDescription {
    /// 0-based, in the dataset's label order.
    pub id: usize,
    pub name: String,
    /// What the action looks like and which body parts matter.
    pub global: String,
    /// Joint names of the layout that matter most; may be empty, in which case key-joint
    /// targets come from body-part phrases in `global`.
    #[serde(default)]
    pub key_joints: Vec<String>,
    /// One description per joint of the layout, keyed by joint name.
    pub local: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptionFile {
    pub format: String,
    pub dataset: String,
    pub layout: String,
    pub provenance: Provenance,
    pub classes: Vec<ClassDescription>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a description file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{origin}: {problems_text}", problems_text = problems.join("; "))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

impl DescriptionFile {
    pub fn new(dataset: &str, layout: &str, provenance: Provenance) -> Self {
        Self {
            format: FORMAT.to_string(),
            dataset: dataset.to_string(),
            layout: layout.to_string(),
            provenance,
            classes: Vec::new(),
        }
    }

    /// A file whose every text, global and per joint, is the class's name, for training
    /// without an LLM: on MSR Action3D's validation splits the recipe keeps a little over half
    /// of its one-shot gain over no text with such a file (docs/text.md). Key joints are left
    /// empty, so their targets come from body-part words in the names (`key_joint_targets`);
    /// edit the file to name them.
    pub fn names_only(dataset: &str, layout: &Layout, classes: &[String]) -> Self {
        let provenance = Provenance {
            model: "none: the class names".into(),
            date: crate::util::today_utc(),
            note: "written by `crossglg text names`".into(),
            ..Default::default()
        };
        let mut file = Self::new(dataset, &layout.name, provenance);
        file.classes = classes
            .iter()
            .enumerate()
            .map(|(id, name)| ClassDescription {
                id,
                name: name.clone(),
                global: name.clone(),
                key_joints: Vec::new(),
                local: layout
                    .joints
                    .iter()
                    .map(|j| (j.clone(), name.clone()))
                    .collect(),
            })
            .collect();
        file
    }

    /// Reads a file without checking it against a layout (see [`validate`]).
    pub fn load(path: &Path) -> Result<Self, FormatError> {
        let text =
            crossglg_data::bounded::read_to_string(path, crossglg_data::bounded::SMALL_FILE_BYTES)
                .map_err(|source| FormatError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
        Self::from_json_str(&text, path)
    }

    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self, FormatError> {
        let file: Self = serde_json::from_str(text).map_err(|source| FormatError::Parse {
            path: origin.to_path_buf(),
            source,
        })?;
        if file.format != FORMAT {
            return Err(FormatError::Invalid {
                origin: origin.display().to_string(),
                problems: vec![format!(
                    "format is `{}`, this version reads `{FORMAT}`",
                    file.format
                )],
            });
        }
        Ok(file)
    }

    /// Pretty JSON, written to a temporary file and renamed into place.
    pub fn save(&self, path: &Path) -> Result<(), FormatError> {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        write_atomic(path, text.as_bytes()).map_err(|source| FormatError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The class with this name (exact) or id (a number).
    pub fn find_class(&self, name_or_id: &str) -> Option<&ClassDescription> {
        self.classes
            .iter()
            .find(|c| c.name == name_or_id)
            .or_else(|| {
                let id: usize = name_or_id.trim().parse().ok()?;
                self.classes.iter().find(|c| c.id == id)
            })
            .or_else(|| {
                let low = name_or_id.to_lowercase();
                self.classes.iter().find(|c| c.name.to_lowercase() == low)
            })
    }
}

/// Checks a file against a layout and lists every problem found: wrong format or layout,
/// duplicate or missing ids (ids must be 0..n), empty texts, unknown or missing joints.
/// `origin` names the file in the error.
pub fn validate(file: &DescriptionFile, layout: &Layout, origin: &str) -> Result<(), FormatError> {
    let mut p = Vec::new();
    if file.layout != layout.name {
        // Compared by joints, not by name: a layout file and a built-in name (or two files
        // with different names) that list the same joints are the same layout.
        match Layout::load_named_in(&file.layout, Path::new(origin)) {
            Ok(own) => {
                if let Some(d) = own.joint_difference(layout) {
                    p.push(format!(
                        "written for layout `{}`, checked against layout `{}`: {d}",
                        file.layout, layout.name
                    ));
                }
            }
            Err(e) => p.push(format!(
                "written for layout `{}`, checked against layout `{}` (cannot compare their joints: {e})",
                file.layout, layout.name
            )),
        }
    }
    content_problems(file, layout, &mut p);
    problems_to_result(p, origin)
}

/// [`validate`] without the check that the file names `layout`: for callers that resolved the
/// layout from the file itself, or whose `origin` is not a path the file's layout name could
/// be resolved against (`build_bank`). Every text is still checked against `layout`'s joints.
pub fn validate_content(
    file: &DescriptionFile,
    layout: &Layout,
    origin: &str,
) -> Result<(), FormatError> {
    let mut p = Vec::new();
    content_problems(file, layout, &mut p);
    problems_to_result(p, origin)
}

fn content_problems(file: &DescriptionFile, layout: &Layout, p: &mut Vec<String>) {
    if file.format != FORMAT {
        p.push(format!("format is `{}`, expected `{FORMAT}`", file.format));
    }
    if file.dataset.trim().is_empty() {
        p.push("field `dataset` is empty".into());
    }
    if file.classes.is_empty() {
        p.push("has no classes".into());
    }
    let joints: BTreeSet<&str> = layout.joints.iter().map(String::as_str).collect();
    let mut ids = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (k, c) in file.classes.iter().enumerate() {
        let at = format!("classes[{k}] (id {}, `{}`)", c.id, c.name);
        if let Some(prev) = ids.insert(c.id, k) {
            p.push(format!("{at}: id {} already used by classes[{prev}]", c.id));
        }
        if let Some(prev) = names.insert(c.name.as_str(), k) {
            p.push(format!("{at}: name already used by classes[{prev}]"));
        }
        if c.name.trim().is_empty() {
            p.push(format!("{at}: empty name"));
        }
        if c.global.trim().is_empty() {
            p.push(format!("{at}: empty global description"));
        }
        let mut seen = BTreeSet::new();
        for j in &c.key_joints {
            if !joints.contains(j.as_str()) {
                p.push(format!(
                    "{at}: key joint `{j}` is not a joint of layout `{}`",
                    layout.name
                ));
            } else if !seen.insert(j.as_str()) {
                p.push(format!("{at}: key joint `{j}` listed twice"));
            }
        }
        for (j, text) in &c.local {
            if !joints.contains(j.as_str()) {
                p.push(format!(
                    "{at}: local description for unknown joint `{j}` (layout `{}`)",
                    layout.name
                ));
            } else if text.trim().is_empty() {
                p.push(format!("{at}: empty local description for joint `{j}`"));
            }
        }
        let missing: Vec<&str> = layout
            .joints
            .iter()
            .filter(|j| !c.local.contains_key(j.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            p.push(format!(
                "{at}: no local description for joint(s) {}",
                missing.join(", ")
            ));
        }
    }
    let n = file.classes.len();
    let missing_ids: Vec<String> = (0..n)
        .filter(|i| !ids.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing_ids.is_empty() && !file.classes.is_empty() {
        p.push(format!(
            "ids must be 0..{} (0-based label order); missing {}",
            n - 1,
            missing_ids.join(", ")
        ));
    }
}

fn problems_to_result(mut p: Vec<String>, origin: &str) -> Result<(), FormatError> {
    if p.is_empty() {
        Ok(())
    } else {
        // the first problems say what is wrong; hundreds of repeats of one cause do not
        const SHOWN: usize = 20;
        if p.len() > SHOWN {
            let more = p.len() - SHOWN;
            p.truncate(SHOWN);
            p.push(format!("and {more} more problems"));
        }
        Err(FormatError::Invalid {
            origin: origin.to_string(),
            problems: p,
        })
    }
}

/// What the CLI's `crossglg text validate FILE` runs: reads the file, loads the layout it
/// names (built-in or a path, unless `layout` overrides it) and validates. Returns a one-line
/// summary.
pub fn validate_path(path: &Path, layout: Option<&Layout>) -> Result<String, crate::TextError> {
    let file = DescriptionFile::load(path)?;
    let loaded;
    let layout = match layout {
        Some(l) => l,
        None => {
            loaded = Layout::load_named_in(&file.layout, path)?;
            &loaded
        }
    };
    validate(&file, layout, &path.display().to_string())?;
    Ok(format!(
        "{}: valid ({} classes, dataset `{}`, layout `{}`, model `{}`)",
        path.display(),
        file.classes.len(),
        file.dataset,
        file.layout,
        file.provenance.model
    ))
}
