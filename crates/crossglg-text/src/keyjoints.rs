//! Key-joint targets (`k_gt` of the JID loss): one distribution over the layout's joints per
//! class. From the class's structured `key_joints` list when it has one, otherwise from the
//! body-part phrases found in its global text with a lexicon derived from the layout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crossglg_data::Layout;

use crate::format::{ClassDescription, DescriptionFile};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyJointConfig {
    /// Total probability mass spread evenly over all joints; the key joints share the rest.
    /// 0.1 by default, so a joint that is never mentioned still gets 0.1 / V.
    pub floor: f32,
}

impl Default for KeyJointConfig {
    fn default() -> Self {
        Self { floor: 0.1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyJointSource {
    /// The class's `key_joints` list.
    Structured,
    /// Body-part phrases in the global text.
    Lexicon,
    /// Nothing found: the target is uniform.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
    Center,
}

/// What a lexicon word refers to.
#[derive(Debug, Clone)]
enum Target {
    /// Joints by index (from joint names).
    Joints(Vec<usize>),
}

#[derive(Debug, Clone)]
struct Entry {
    words: Vec<String>,
    target: Target,
    /// Only counts when preceded by a determiner ("his back", not "back and forth").
    needs_determiner: bool,
}

/// A phrase found in a text and the joints it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Mention {
    pub phrase: String,
    pub joints: Vec<usize>,
}

/// Body-part phrases of one layout, built from its joint names and parts.
#[derive(Debug, Clone)]
pub struct Lexicon {
    entries: Vec<Entry>,
    sides: Vec<Side>,
    max_words: usize,
}

const DETERMINERS: &[&str] = &[
    "his", "her", "their", "the", "its", "my", "your", "upper", "lower", "whole", "entire", "a",
];

/// Irregular plurals; regular ones lose their final `s` when the singular is a lexicon word.
const PLURALS: &[(&str, &str)] = &[("feet", "foot"), ("teeth", "tooth")];

/// Synonyms: a word and, in order of preference, where it points. `joint:x` means joints whose
/// side-less name is `x`; `part:x` means the layout part `x`. The first that exists in the
/// layout is used, so "wrist" is the wrist joints on Kinect and the hands part elsewhere.
const SYNONYMS: &[(&str, &[&str])] = &[
    ("hand", &["part:hands", "joint:hand"]),
    ("palm", &["part:hands", "joint:hand"]),
    ("finger", &["part:hands", "joint:hand"]),
    ("fingertip", &["joint:hand tip", "part:hands"]),
    ("fist", &["part:hands", "joint:hand"]),
    ("thumb", &["joint:thumb", "part:hands"]),
    ("wrist", &["joint:wrist", "part:hands"]),
    ("arm", &["part:arms"]),
    ("forearm", &["joint:elbow", "part:arms"]),
    ("elbow", &["joint:elbow", "part:arms"]),
    ("shoulder", &["joint:shoulder", "part:arms"]),
    ("leg", &["part:legs"]),
    ("thigh", &["joint:hip", "part:legs"]),
    ("calf", &["joint:knee", "part:legs"]),
    ("shin", &["joint:knee", "part:legs"]),
    ("knee", &["joint:knee", "part:legs"]),
    ("foot", &["part:feet", "joint:foot"]),
    ("toe", &["joint:foot", "part:feet"]),
    ("heel", &["joint:ankle", "part:feet"]),
    ("ankle", &["joint:ankle", "part:feet"]),
    ("head", &["part:head", "joint:head"]),
    ("face", &["joint:head", "part:head"]),
    ("mouth", &["joint:head", "part:head"]),
    ("lip", &["joint:head", "part:head"]),
    ("eye", &["joint:head", "part:head"]),
    ("nose", &["joint:head", "part:head"]),
    ("ear", &["joint:head", "part:head"]),
    ("chin", &["joint:head", "part:head"]),
    ("forehead", &["joint:head", "part:head"]),
    ("hair", &["joint:head", "part:head"]),
    ("tooth", &["joint:head", "part:head"]),
    ("cheek", &["joint:head", "part:head"]),
    ("jaw", &["joint:head", "part:head"]),
    (
        "throat",
        &["joint:neck", "joint:shoulder center", "part:head"],
    ),
    ("nail", &["part:hands", "joint:hand"]),
    (
        "neck",
        &["joint:neck", "joint:shoulder center", "part:head"],
    ),
    ("hip", &["joint:hip", "part:torso"]),
    ("waist", &["joint:hip", "part:torso"]),
    ("pelvis", &["joint:hip", "part:torso"]),
    ("torso", &["part:torso"]),
    ("chest", &["part:torso"]),
    ("trunk", &["part:torso"]),
    ("spine", &["part:torso"]),
    ("abdomen", &["part:torso"]),
    ("stomach", &["part:torso"]),
    ("belly", &["part:torso"]),
];

/// Words that only name a body part after a determiner ("his back", "the body").
const WITH_DETERMINER: &[(&str, &str)] = &[("back", "part:torso"), ("body", "part:torso")];

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\'').to_lowercase())
        .map(|w| w.strip_suffix("'s").map(str::to_string).unwrap_or(w))
        .filter(|w| !w.is_empty())
        .collect()
}

impl Lexicon {
    pub fn for_layout(layout: &Layout) -> Self {
        let sides: Vec<Side> = (0..layout.num_joints())
            .map(|j| {
                if layout.left.contains(&j) {
                    Side::Left
                } else if layout.right.contains(&j) {
                    Side::Right
                } else {
                    Side::Center
                }
            })
            .collect();
        // Side-less name of every joint: "left_hand_tip" -> "hand tip".
        let bare: Vec<String> = layout
            .joints
            .iter()
            .map(|j| {
                j.split('_')
                    .filter(|w| *w != "left" && *w != "right")
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let resolve = |spec: &str| -> Option<Vec<usize>> {
            let v: Vec<usize> = if let Some(p) = spec.strip_prefix("part:") {
                layout.parts.get(p).cloned().unwrap_or_default()
            } else if let Some(b) = spec.strip_prefix("joint:") {
                (0..bare.len()).filter(|&j| bare[j] == b).collect()
            } else {
                Vec::new()
            };
            (!v.is_empty()).then_some(v)
        };
        let synonym_words: Vec<&str> = SYNONYMS.iter().map(|(w, _)| *w).collect();
        let mut entries = Vec::new();
        // Full joint names and side-less joint names ("left hand tip", "hand tip", "spine base").
        // Names whose side-less part is a synonym word ("left_hand", "head") are left to the
        // synonym rule plus the side logic, so "left hand" means the whole left hand.
        for (j, name) in layout.joints.iter().enumerate() {
            if synonym_words.contains(&bare[j].as_str()) {
                continue;
            }
            entries.push(Entry {
                words: name.split('_').map(str::to_string).collect(),
                target: Target::Joints(vec![j]),
                needs_determiner: false,
            });
        }
        let mut by_bare: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (j, b) in bare.iter().enumerate() {
            by_bare.entry(b.as_str()).or_default().push(j);
        }
        for (b, js) in &by_bare {
            // Single words with a synonym rule are handled by the rule (e.g. "hand" -> hands part).
            if b.is_empty() || synonym_words.contains(b) {
                continue;
            }
            entries.push(Entry {
                words: b.split(' ').map(str::to_string).collect(),
                target: Target::Joints(js.clone()),
                needs_determiner: false,
            });
        }
        for (w, specs) in SYNONYMS {
            if let Some(js) = specs.iter().find_map(|s| resolve(s)) {
                entries.push(Entry {
                    words: vec![w.to_string()],
                    target: Target::Joints(js),
                    needs_determiner: false,
                });
            }
        }
        for (w, spec) in WITH_DETERMINER {
            if let Some(js) = resolve(spec) {
                entries.push(Entry {
                    words: vec![w.to_string()],
                    target: Target::Joints(js),
                    needs_determiner: true,
                });
            }
        }
        let max_words = entries.iter().map(|e| e.words.len()).max().unwrap_or(1);
        Self {
            entries,
            sides,
            max_words,
        }
    }

    fn singular(&self, w: &str) -> String {
        if let Some((_, s)) = PLURALS.iter().find(|(p, _)| *p == w) {
            return s.to_string();
        }
        if let Some(s) = w.strip_suffix('s') {
            if self.entries.iter().any(|e| e.words.iter().any(|x| x == s)) {
                return s.to_string();
            }
        }
        w.to_string()
    }

    /// Every body-part phrase in `text`, longest match first, with "left"/"right" before a
    /// phrase restricting it to that side.
    pub fn find(&self, text: &str) -> Vec<Mention> {
        let raw = words_of(text);
        let words: Vec<String> = raw.iter().map(|w| self.singular(w)).collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let mut matched = None;
            for n in (1..=self.max_words.min(words.len() - i)).rev() {
                let span = &words[i..i + n];
                if let Some(e) = self.entries.iter().find(|e| e.words == span) {
                    matched = Some((n, e));
                    break;
                }
            }
            let Some((n, e)) = matched else {
                i += 1;
                continue;
            };
            let prev = |k: usize| i.checked_sub(k).map(|p| words[p].as_str());
            if e.needs_determiner && !prev(1).is_some_and(|p| DETERMINERS.contains(&p)) {
                i += n;
                continue;
            }
            let Target::Joints(js) = &e.target;
            let mut js = js.clone();
            // A side word just before (skipping one possessive: "his left hand").
            let side = [prev(1), prev(2)]
                .into_iter()
                .take_while(|w| w.is_some())
                .flatten()
                .find_map(|w| match w {
                    "left" => Some(Side::Left),
                    "right" => Some(Side::Right),
                    _ => None,
                });
            if let Some(s) = side {
                let sided: Vec<usize> =
                    js.iter().copied().filter(|&j| self.sides[j] == s).collect();
                if !sided.is_empty() {
                    js = sided;
                }
            }
            out.push(Mention {
                phrase: raw[i..i + n].join(" "),
                joints: js,
            });
            i += n;
        }
        out
    }
}

/// The target of one class and where it came from. Key joints share `1 - floor` in proportion
/// to how often they are named (each structured key joint counts once); `floor` is spread over
/// all joints. With no key joints at all the target is uniform.
pub fn class_target(
    class: &ClassDescription,
    layout: &Layout,
    lexicon: &Lexicon,
    cfg: &KeyJointConfig,
) -> (Vec<f32>, KeyJointSource) {
    let v = layout.num_joints();
    let mut score = vec![0f32; v];
    let mut source = KeyJointSource::None;
    for name in &class.key_joints {
        if let Some(j) = layout.joint_index(name) {
            score[j] += 1.0;
            source = KeyJointSource::Structured;
        }
    }
    // The global text first; if it names no body part, the class name ("shake head").
    for text in [&class.global, &class.name] {
        if source != KeyJointSource::None {
            break;
        }
        for m in lexicon.find(text) {
            for j in m.joints {
                score[j] += 1.0;
                source = KeyJointSource::Lexicon;
            }
        }
    }
    let total: f32 = score.iter().sum();
    let floor = cfg.floor.clamp(0.0, 1.0);
    let target = if total > 0.0 {
        score
            .iter()
            .map(|s| (1.0 - floor) * s / total + floor / v as f32)
            .collect()
    } else {
        vec![1.0 / v as f32; v]
    };
    (target, source)
}

/// Targets of every class, ordered by class id: `[classes][joints]`, each row summing to 1.
pub fn key_joint_targets(
    file: &DescriptionFile,
    layout: &Layout,
    cfg: &KeyJointConfig,
) -> Vec<Vec<f32>> {
    let lexicon = Lexicon::for_layout(layout);
    let mut classes: Vec<&ClassDescription> = file.classes.iter().collect();
    classes.sort_by_key(|c| c.id);
    classes
        .iter()
        .map(|c| class_target(c, layout, &lexicon, cfg).0)
        .collect()
}

/// A readable view of one class: its texts and its key-joint target as a ranked bar list
/// (what `crossglg text show CLASS` prints). `class` is a name or an id.
pub fn show_class(
    file: &DescriptionFile,
    class: &str,
    layout: &Layout,
    cfg: &KeyJointConfig,
) -> Result<String, crate::TextError> {
    let c = file.find_class(class).ok_or_else(|| {
        crate::TextError::Other(format!(
            "no class `{class}` in the description file (dataset `{}`, {} classes)",
            file.dataset,
            file.classes.len()
        ))
    })?;
    let lexicon = Lexicon::for_layout(layout);
    let (target, source) = class_target(c, layout, &lexicon, cfg);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "class {} `{}` ({} / {})",
        c.id, c.name, file.dataset, layout.name
    );
    let _ = writeln!(s, "\nglobal:\n  {}", c.global);
    let src = match source {
        KeyJointSource::Structured => format!("listed: {}", c.key_joints.join(", ")),
        KeyJointSource::Lexicon => {
            let (ms, from) = match lexicon.find(&c.global) {
                m if !m.is_empty() => (m, "the global text"),
                _ => (lexicon.find(&c.name), "the class name"),
            };
            let ms: Vec<String> = ms.into_iter().map(|m| m.phrase).collect();
            format!("from body-part words in {from}: {}", ms.join(", "))
        }
        KeyJointSource::None => "none found; the target is uniform".into(),
    };
    let _ = writeln!(s, "\nkey joints ({src}):");
    let mut order: Vec<usize> = (0..target.len()).collect();
    order.sort_by(|&a, &b| target[b].total_cmp(&target[a]).then(a.cmp(&b)));
    let base = cfg.floor / target.len() as f32;
    let max = target.iter().copied().fold(0.0f32, f32::max).max(1e-9);
    let width = layout.joints.iter().map(String::len).max().unwrap_or(0);
    let mut rest = 0;
    for &j in &order {
        if source != KeyJointSource::None && target[j] <= base + 1e-6 {
            rest += 1;
            continue;
        }
        let bar = "#".repeat(((target[j] / max) * 30.0).round() as usize);
        let _ = writeln!(s, "  {:width$}  {:.3}  {bar}", layout.joints[j], target[j]);
    }
    if rest > 0 {
        let _ = writeln!(s, "  ({rest} other joints at {base:.3} each)");
    }
    let _ = writeln!(s, "\nlocal:");
    for j in &layout.joints {
        let t = c.local.get(j).map(String::as_str).unwrap_or("(missing)");
        let _ = writeln!(s, "  {j:width$}  {t}");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::builtin("ntu25").unwrap()
    }

    fn names(l: &Layout, js: &[usize]) -> Vec<String> {
        let mut v: Vec<String> = js.iter().map(|&j| l.joints[j].clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn sides_plurals_and_determiners() {
        let l = layout();
        let lex = Lexicon::for_layout(&l);
        let m = lex.find("He raises his left hand, then both feet; moves back and forth.");
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            names(&l, &m[0].joints),
            ["left_hand", "left_hand_tip", "left_thumb", "left_wrist"]
        );
        assert_eq!(
            names(&l, &m[1].joints),
            ["left_ankle", "left_foot", "right_ankle", "right_foot"]
        );
        let m = lex.find("She bends her back. The right knee lifts.");
        assert_eq!(m[0].phrase, "back");
        assert!(m[0].joints.contains(&l.joint_index("spine_mid").unwrap()));
        assert_eq!(names(&l, &m[1].joints), ["right_knee"]);
        let m = lex.find("the spine base and the right hand tip");
        assert_eq!(names(&l, &m[0].joints), ["spine_base"]);
        assert_eq!(names(&l, &m[1].joints), ["right_hand_tip"]);
    }

    #[test]
    fn target_sums_to_one_with_floor() {
        let l = layout();
        let lex = Lexicon::for_layout(&l);
        let c = ClassDescription {
            id: 0,
            name: "x".into(),
            global: "nothing anatomical here".into(),
            key_joints: vec!["head".into(), "right_hand".into()],
            local: Default::default(),
        };
        let cfg = KeyJointConfig { floor: 0.2 };
        let (t, src) = class_target(&c, &l, &lex, &cfg);
        assert_eq!(src, KeyJointSource::Structured);
        assert!((t.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!((t[3] - (0.4 + 0.2 / 25.0)).abs() < 1e-6);
        assert!((t[0] - 0.2 / 25.0).abs() < 1e-6);
        let c = ClassDescription {
            key_joints: vec![],
            ..c
        };
        let (t, src) = class_target(&c, &l, &lex, &cfg);
        assert_eq!(src, KeyJointSource::None);
        assert!(t.iter().all(|&x| (x - 0.04).abs() < 1e-6));
    }
}
