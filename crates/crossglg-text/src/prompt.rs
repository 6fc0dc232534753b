//! Prompt templates and a tolerant reader for the answers.
//!
//! Templates are plain text files with placeholders `{action}`, `{joints}` (the layout's joint
//! names, comma separated), `{num_joints}` and `{layout}`. Any other braces are left alone, so a
//! template can show the JSON shape it wants back. The defaults are compiled in from
//! `prompts/global.txt` and `prompts/local.txt`; users pass their own file to change them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossglg_data::Layout;
use serde_json::Value;

use crate::util::sha256_hex;

pub const DEFAULT_GLOBAL: &str = include_str!("../prompts/global.txt");
pub const DEFAULT_LOCAL: &str = include_str!("../prompts/local.txt");

/// Which of the two questions a template asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromptKind {
    /// What the action looks like and which joints matter.
    Global,
    /// How each joint moves.
    Local,
}

impl PromptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Global => "global",
            PromptKind::Local => "local",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read prompt template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("prompt template {origin} lacks the placeholder {missing} (placeholders: {{action}}, {{joints}}, {{num_joints}}, {{layout}})")]
    Placeholder {
        origin: String,
        missing: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    pub kind: PromptKind,
    pub text: String,
    /// Where the text came from, for messages ("built-in global", or a path).
    pub origin: String,
}

impl PromptTemplate {
    pub fn builtin(kind: PromptKind) -> Self {
        let text = match kind {
            PromptKind::Global => DEFAULT_GLOBAL,
            PromptKind::Local => DEFAULT_LOCAL,
        };
        Self {
            kind,
            text: text.to_string(),
            origin: format!("built-in {}", kind.as_str()),
        }
    }

    /// A template from a file; it must contain `{action}` and `{joints}`.
    pub fn from_file(kind: PromptKind, path: &Path) -> Result<Self, PromptError> {
        let text =
            crossglg_data::bounded::read_to_string(path, crossglg_data::bounded::SMALL_FILE_BYTES)
                .map_err(|source| PromptError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
        Self::from_text(kind, &text, &path.display().to_string())
    }

    pub fn from_text(kind: PromptKind, text: &str, origin: &str) -> Result<Self, PromptError> {
        for missing in ["{action}", "{joints}"] {
            if !text.contains(missing) {
                return Err(PromptError::Placeholder {
                    origin: origin.to_string(),
                    missing,
                });
            }
        }
        Ok(Self {
            kind,
            text: text.to_string(),
            origin: origin.to_string(),
        })
    }

    /// The built-in template, or the file at `path` when one is given.
    pub fn builtin_or_file(kind: PromptKind, path: Option<&Path>) -> Result<Self, PromptError> {
        match path {
            Some(p) => Self::from_file(kind, p),
            None => Ok(Self::builtin(kind)),
        }
    }

    /// SHA-256 (hex) of the template text, recorded with every answer it produced.
    pub fn sha256(&self) -> String {
        sha256_hex(self.text.as_bytes())
    }

    pub fn render(&self, action: &str, layout: &Layout) -> String {
        self.text
            .replace("{action}", action)
            .replace("{joints}", &layout.joints.join(", "))
            .replace("{num_joints}", &layout.num_joints().to_string())
            .replace("{layout}", &layout.name)
    }
}

/// A global answer: a description and the key joints it names (layout joint names only).
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalAnswer {
    pub description: String,
    pub key_joints: Vec<String>,
    /// Joint names the answer gave that are not in the layout (dropped).
    pub unknown_joints: Vec<String>,
}

/// A local answer: one text per layout joint.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalAnswer {
    pub joints: BTreeMap<String, String>,
    pub unknown_joints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("the model refused: {0:?}")]
    Refused(String),
    #[error("answer has no description text")]
    Empty,
    #[error("answer lacks descriptions for joint(s) {}", .0.join(", "))]
    MissingJoints(Vec<String>),
}

/// Lower-case, spaces and hyphens to underscores: "Right Hand" and "right-hand" both name
/// `right_hand`.
pub fn normalize_joint_name(s: &str) -> String {
    let s = s
        .trim()
        .trim_matches(|c: char| matches!(c, '*' | '`' | '"' | '\'' | '-' | '.' | ':' | '#'))
        .trim();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ' ' || c == '-' || c == '_' {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out.trim_matches('_').to_string()
}

fn resolve_joint<'a>(layout: &'a Layout, raw: &str) -> Option<&'a str> {
    let n = normalize_joint_name(raw);
    layout.joints.iter().find(|j| **j == n).map(String::as_str)
}

/// Phrases with which chat models decline; only consulted when no usable answer was found.
const REFUSALS: &[&str] = &[
    "i can't",
    "i cannot",
    "i can not",
    "i'm sorry",
    "i am sorry",
    "i'm unable",
    "i am unable",
    "i won't",
    "as an ai",
    "i'm not able",
    "i am not able",
];

fn looks_like_refusal(text: &str) -> bool {
    let low = text.to_lowercase().replace('\u{2019}', "'");
    let head: String = low.chars().take(200).collect();
    REFUSALS.iter().any(|r| head.contains(r))
}

/// Every JSON object that can be cut out of `text`: the contents of code fences first, then
/// each balanced `{...}` span, so answers wrapped in prose or markdown still parse.
fn json_objects(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(0);
        let Some(end) = after[body_start..].find("```") else {
            break;
        };
        if let Ok(v @ Value::Object(_)) = serde_json::from_str(after[body_start..][..end].trim()) {
            out.push(v);
        }
        rest = &after[body_start + end + 3..];
    }
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == '{' {
            if let Some(end) = balanced_end(&bytes, i) {
                let s: String = bytes[i..=end].iter().collect();
                if let Ok(v @ Value::Object(_)) = serde_json::from_str(&s) {
                    out.push(v);
                    i = end + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// Index of the `}` closing the `{` at `start`, honouring JSON strings.
fn balanced_end(chars: &[char], start: usize) -> Option<usize> {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (k, &c) in chars.iter().enumerate().skip(start) {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn get_str<'a>(obj: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
}

fn split_names(raw: &[String], layout: &Layout) -> (Vec<String>, Vec<String>) {
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for r in raw {
        match resolve_joint(layout, r) {
            Some(j) if !known.iter().any(|k| k == j) => known.push(j.to_string()),
            Some(_) => {}
            None if !r.trim().is_empty() => unknown.push(r.trim().to_string()),
            None => {}
        }
    }
    (known, unknown)
}

/// Reads a global answer: JSON `{"description", "key_joints"}` anywhere in the text (also
/// accepted: `global`/`text`, `keyJoints`/`joints`), else the prose itself as the description
/// with key joints from a `Key joints: a, b, c` line.
pub fn parse_global(text: &str, layout: &Layout) -> Result<GlobalAnswer, AnswerError> {
    for v in json_objects(text) {
        let Value::Object(obj) = &v else { continue };
        let Some(desc) = get_str(obj, &["description", "global", "text"]) else {
            continue;
        };
        let raw: Vec<String> = ["key_joints", "keyJoints", "key joints", "joints"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_array))
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let (key_joints, unknown_joints) = split_names(&raw, layout);
        return Ok(GlobalAnswer {
            description: desc.trim().to_string(),
            key_joints,
            unknown_joints,
        });
    }
    if looks_like_refusal(text) {
        return Err(AnswerError::Refused(
            text.trim().chars().take(300).collect(),
        ));
    }
    let mut desc = Vec::new();
    let mut raw = Vec::new();
    for line in text.lines() {
        let l = line.trim().trim_start_matches(['*', '#', '-', ' ']);
        if let Some(rest) = ["key joints", "key_joints", "important joints"]
            .iter()
            .find_map(|p| {
                l.get(..p.len())
                    .filter(|h| h.eq_ignore_ascii_case(p))
                    .map(|_| &l[p.len()..])
            })
        {
            let rest = rest.trim_start_matches(['*', ':', ' ']);
            raw.extend(rest.split([',', ';']).map(|s| s.trim().to_string()));
        } else if !l.is_empty() && !l.starts_with("```") {
            desc.push(l.trim());
        }
    }
    let description = desc.join(" ");
    let description = description
        .trim_start_matches("Description:")
        .trim()
        .to_string();
    if description.is_empty() {
        return Err(AnswerError::Empty);
    }
    let (key_joints, unknown_joints) = split_names(&raw, layout);
    Ok(GlobalAnswer {
        description,
        key_joints,
        unknown_joints,
    })
}

/// Reads a local answer: JSON `{"joints": {name: text}}` (or a flat `{name: text}` object)
/// anywhere in the text, else `joint: text` lines (bullets, bold and numbering ignored). Every
/// joint of the layout must be described.
pub fn parse_local(text: &str, layout: &Layout) -> Result<LocalAnswer, AnswerError> {
    let mut found: Option<(BTreeMap<String, String>, Vec<String>)> = None;
    for v in json_objects(text) {
        let Value::Object(obj) = &v else { continue };
        let map = match obj.get("joints").or_else(|| obj.get("local")) {
            Some(Value::Object(m)) => m,
            _ => obj,
        };
        let mut joints = BTreeMap::new();
        let mut unknown = Vec::new();
        for (k, val) in map {
            let Some(t) = val.as_str() else { continue };
            match resolve_joint(layout, k) {
                Some(j) if !t.trim().is_empty() => {
                    joints.insert(j.to_string(), t.trim().to_string());
                }
                Some(_) => {}
                None => unknown.push(k.clone()),
            }
        }
        if !joints.is_empty() {
            found = Some((joints, unknown));
            break;
        }
    }
    if found.is_none() {
        let mut joints = BTreeMap::new();
        let mut unknown = Vec::new();
        for line in text.lines() {
            let l = line
                .trim()
                .trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, '.' | ')'))
                .trim_start_matches(['*', '-', '#', ' ']);
            let Some((name, desc)) = l.split_once(':').or_else(|| l.split_once(" - ")) else {
                continue;
            };
            let desc = desc.trim().trim_start_matches('*').trim();
            if desc.is_empty() || name.split_whitespace().count() > 4 {
                continue;
            }
            match resolve_joint(layout, name) {
                Some(j) => {
                    joints.insert(j.to_string(), desc.to_string());
                }
                None => unknown.push(name.trim().to_string()),
            }
        }
        if !joints.is_empty() {
            found = Some((joints, unknown));
        }
    }
    let Some((joints, unknown_joints)) = found else {
        if looks_like_refusal(text) {
            return Err(AnswerError::Refused(
                text.trim().chars().take(300).collect(),
            ));
        }
        return Err(AnswerError::MissingJoints(layout.joints.clone()));
    };
    let missing: Vec<String> = layout
        .joints
        .iter()
        .filter(|j| !joints.contains_key(*j))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(AnswerError::MissingJoints(missing));
    }
    Ok(LocalAnswer {
        joints,
        unknown_joints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::builtin("ntu25").unwrap()
    }

    #[test]
    fn render_fills_placeholders_and_keeps_json_braces() {
        let t = PromptTemplate::builtin(PromptKind::Global);
        let s = t.render("drink water", &layout());
        assert!(s.contains("\"drink water\""));
        assert!(s.contains("spine_base, spine_mid"));
        assert!(s.contains("25 joints"));
        assert!(s.contains("{\"description\""));
        assert!(!s.contains("{action}"));
        assert_eq!(t.sha256().len(), 64);
    }

    #[test]
    fn template_without_placeholder_is_rejected() {
        let e = PromptTemplate::from_text(PromptKind::Local, "joints {joints}", "x.txt");
        assert!(e.unwrap_err().to_string().contains("{action}"));
    }

    #[test]
    fn global_json_in_fence_with_prose() {
        let a = "Sure! Here it is:\n```json\n{\"description\": \"Lifts a cup.\", \"key_joints\": [\"Right Hand\", \"head\", \"tail\"]}\n```\nHope it helps.";
        let g = parse_global(a, &layout()).unwrap();
        assert_eq!(g.description, "Lifts a cup.");
        assert_eq!(g.key_joints, vec!["right_hand", "head"]);
        assert_eq!(g.unknown_joints, vec!["tail"]);
    }

    #[test]
    fn global_free_text_with_key_joint_line() {
        let a = "The person raises the right hand to the mouth.\n**Key joints:** right_hand, right-elbow, head";
        let g = parse_global(a, &layout()).unwrap();
        assert_eq!(
            g.description,
            "The person raises the right hand to the mouth."
        );
        assert_eq!(g.key_joints, vec!["right_hand", "right_elbow", "head"]);
    }

    #[test]
    fn refusal_is_reported() {
        let e = parse_global("I'm sorry, but I can't help with that.", &layout()).unwrap_err();
        assert!(matches!(e, AnswerError::Refused(_)));
        let e = parse_local("I cannot assist with this request.", &layout()).unwrap_err();
        assert!(matches!(e, AnswerError::Refused(_)));
    }

    #[test]
    fn local_json_and_lines() {
        let l = layout();
        let obj: BTreeMap<String, String> = l
            .joints
            .iter()
            .map(|j| (j.clone(), format!("{j} moves")))
            .collect();
        let a = format!("Here you go: {}", serde_json::json!({ "joints": obj }));
        assert_eq!(parse_local(&a, &l).unwrap().joints, obj);
        let lines: String = l
            .joints
            .iter()
            .enumerate()
            .map(|(i, j)| format!("{}. **{}**: {} moves\n", i + 1, j.replace('_', " "), j))
            .collect();
        assert_eq!(parse_local(&lines, &l).unwrap().joints, obj);
        let short = "head: nods\nneck: bends\n";
        match parse_local(short, &l).unwrap_err() {
            AnswerError::MissingJoints(m) => assert_eq!(m.len(), 23),
            e => panic!("{e}"),
        }
    }
}
