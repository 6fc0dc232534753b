//! One-shot protocols as data. A [`Split`] says which classes are novel (one exemplar each,
//! the rest of their samples are queries) and which are auxiliary (training); [`Split::apply`]
//! turns it into sample indices for a concrete dataset. Built-ins follow the NTU RGB+D 120
//! one-shot protocol and the project's reconstructions for NTU-60, NW-UCLA and MSR Action3D;
//! `docs/protocols.md` documents them and the TOML format of custom splits.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sample::SampleMeta;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown split `{0}` (built-in: {list}); pass a path to a split TOML file to use your own", list = BUILTIN.join(", "))]
    Unknown(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("split file {origin}: {message}")]
    File { origin: String, message: String },
    #[error("split `{split}`: {message}")]
    Invalid { split: String, message: String },
}

/// Names accepted by [`Split::builtin`].
pub const BUILTIN: &[&str] = &[
    "ntu120",
    "ntu120-val",
    "ntu60",
    "ntu60-val",
    "nwucla",
    "msr",
    "kinetics400",
    "kinetics400-val",
];

/// How each novel class's exemplar is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exemplars {
    /// Novel class (0-based label) -> exemplar sample name(s).
    Named(BTreeMap<usize, Vec<String>>),
    /// Per novel class, the sample matching every given field, with the smallest replication
    /// (then the smallest name). Used where sample names are not fixed by a protocol.
    Rule {
        subject: Option<u32>,
        view: Option<u32>,
        setup: Option<u32>,
    },
}

/// Which non-exemplar samples of the novel classes are queries; empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryRule {
    pub subjects: Vec<u32>,
    pub views: Vec<u32>,
    pub setups: Vec<u32>,
}

impl QueryRule {
    fn admits(&self, m: &SampleMeta) -> bool {
        let ok =
            |list: &[u32], v: Option<u32>| list.is_empty() || v.is_some_and(|v| list.contains(&v));
        ok(&self.subjects, m.subject) && ok(&self.views, m.view) && ok(&self.setups, m.setup)
    }
}

/// A one-shot split. Classes are 0-based labels into the dataset's class list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub name: String,
    pub description: String,
    pub novel_classes: Vec<usize>,
    /// Training classes in the order the auxiliary sweep takes them.
    pub auxiliary_classes: Vec<usize>,
    pub exemplars: Exemplars,
    pub queries: QueryRule,
    /// Sample names dropped everywhere (e.g. NTU's samples with missing skeletons).
    pub excluded: BTreeSet<String>,
    /// Suggested auxiliary-set sizes for [`Split::with_auxiliary`].
    pub sweep: Vec<usize>,
}

/// Sample indices a split assigns in one dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub split: String,
    pub train: Vec<usize>,
    /// Ordered like the split's novel classes.
    pub exemplars: Vec<usize>,
    pub queries: Vec<usize>,
}

fn ntu_exemplar(setup: u32, action: usize) -> String {
    format!("S{setup:03}C003P008R001A{action:03}")
}

/// NTU RGB+D split: `novel` are 0-based labels; the exemplar of action `a` is the official
/// `S001C003P008R001Aaaa` (A1–A60) or `S018C003P008R001Aaaa` (A61–A120).
fn ntu(
    name: &str,
    description: &str,
    classes: usize,
    novel: Vec<usize>,
    not_aux: &[usize],
    sweep: Vec<usize>,
) -> Split {
    let exemplars = novel
        .iter()
        .map(|&l| {
            let action = l + 1;
            let setup = if action <= 60 { 1 } else { 18 };
            (l, vec![ntu_exemplar(setup, action)])
        })
        .collect();
    let auxiliary_classes = (0..classes)
        .filter(|l| !novel.contains(l) && !not_aux.contains(l))
        .collect();
    Split {
        name: name.into(),
        description: description.into(),
        novel_classes: novel,
        auxiliary_classes,
        exemplars: Exemplars::Named(exemplars),
        queries: QueryRule::default(),
        excluded: BTreeSet::new(),
        sweep,
    }
}

fn every(start: usize, step: usize, end: usize) -> Vec<usize> {
    (start..end).step_by(step).collect()
}

impl Split {
    /// A built-in split (see [`BUILTIN`]); `excluded` is empty, add NTU's missing-skeleton list
    /// with [`Split::with_excluded`].
    pub fn builtin(name: &str) -> Result<Split, ProtocolError> {
        let s = match name {
            "ntu120" => ntu(
                name,
                "NTU RGB+D 120 official one-shot protocol: novel A1, A7, ..., A115; 100 auxiliary classes",
                120,
                every(0, 6, 120),
                &[],
                vec![20, 40, 60, 80, 100],
            ),
            "ntu120-val" => ntu(
                name,
                "NTU RGB+D 120 validation split for tuning: novel A2, A8, ..., A116; auxiliary = the 80 classes that are novel in neither this nor the official split",
                120,
                every(1, 6, 120),
                &every(0, 6, 120),
                vec![20, 40, 60, 80],
            ),
            "ntu60" => ntu(
                name,
                "NTU RGB+D 60 one-shot: novel A1, A7, ..., A55; 50 auxiliary classes",
                60,
                every(0, 6, 60),
                &[],
                vec![10, 20, 30, 40, 50],
            ),
            "ntu60-val" => ntu(
                name,
                "NTU RGB+D 60 validation split for tuning: novel A2, A8, ..., A56; auxiliary = the 40 classes novel in neither split",
                60,
                every(1, 6, 60),
                &every(0, 6, 60),
                vec![10, 20, 30, 40],
            ),
            "nwucla" => Split {
                name: name.into(),
                description: "NW-UCLA (reconstruction): novel = labels 0, 2, 4, 6, 8; exemplar = subject 1, view 1, first episode".into(),
                novel_classes: every(0, 2, 10),
                auxiliary_classes: every(1, 2, 10),
                exemplars: Exemplars::Rule { subject: Some(1), view: Some(1), setup: None },
                queries: QueryRule::default(),
                excluded: BTreeSet::new(),
                sweep: vec![5],
            },
            "msr" => Split {
                name: name.into(),
                description: "MSR Action3D (reconstruction): novel = labels 0, 4, 8, 12, 16; exemplar = subject 1, first trial".into(),
                novel_classes: every(0, 4, 20),
                auxiliary_classes: (0..20).filter(|l| l % 4 != 0).collect(),
                exemplars: Exemplars::Rule { subject: Some(1), view: None, setup: None },
                queries: QueryRule::default(),
                excluded: BTreeSet::new(),
                sweep: vec![15],
            },
            "kinetics400" => Split {
                name: name.into(),
                description: "Kinetics-400 skeleton (reconstruction: no published one-shot protocol pins it): novel = labels 0, 10, ..., 390 (40 classes, every tenth as NTU-120's split takes every sixth); exemplar = each novel class's first sample by name; 360 auxiliary classes".into(),
                novel_classes: every(0, 10, 400),
                auxiliary_classes: (0..400).filter(|l| l % 10 != 0).collect(),
                exemplars: Exemplars::Rule { subject: None, view: None, setup: None },
                queries: QueryRule::default(),
                excluded: BTreeSet::new(),
                sweep: vec![90, 180, 270, 360],
            },
            "kinetics400-val" => Split {
                name: name.into(),
                description: "Kinetics-400 skeleton validation split for tuning (reconstruction): novel = labels 1, 11, ..., 391; auxiliary = the 320 classes novel in neither this nor kinetics400".into(),
                novel_classes: every(1, 10, 400),
                auxiliary_classes: (0..400).filter(|l| l % 10 > 1).collect(),
                exemplars: Exemplars::Rule { subject: None, view: None, setup: None },
                queries: QueryRule::default(),
                excluded: BTreeSet::new(),
                sweep: vec![80, 160, 240, 320],
            },
            _ => return Err(ProtocolError::Unknown(name.to_string())),
        };
        Ok(s)
    }

    /// A built-in by name, or a split TOML file when `name_or_path` is a path.
    pub fn load(name_or_path: &str) -> Result<Split, ProtocolError> {
        if BUILTIN.contains(&name_or_path) {
            return Split::builtin(name_or_path);
        }
        let p = Path::new(name_or_path);
        if p.extension().is_some_and(|e| e == "toml") || p.exists() {
            return Split::from_toml_file(p);
        }
        Err(ProtocolError::Unknown(name_or_path.to_string()))
    }

    pub fn with_excluded<I, S>(mut self, names: I) -> Split
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.excluded.extend(names.into_iter().map(Into::into));
        self
    }

    /// The same split trained on only the first `k` auxiliary classes (the sweep).
    pub fn with_auxiliary(mut self, k: usize) -> Result<Split, ProtocolError> {
        if k == 0 || k > self.auxiliary_classes.len() {
            return Err(ProtocolError::Invalid {
                split: self.name.clone(),
                message: format!(
                    "asked for {k} auxiliary classes, the split has {}",
                    self.auxiliary_classes.len()
                ),
            });
        }
        self.auxiliary_classes.truncate(k);
        self.name = format!("{}@{k}", self.name);
        Ok(self)
    }

    /// The split with `classes` (labels past the dataset's own, from datasets added for
    /// training) appended to the auxiliary classes: they are trained on and never novel.
    pub fn with_extra_auxiliary(
        mut self,
        classes: std::ops::Range<usize>,
    ) -> Result<Split, ProtocolError> {
        if classes.is_empty() {
            return Ok(self);
        }
        if let Some(c) = classes
            .clone()
            .find(|c| self.novel_classes.contains(c) || self.auxiliary_classes.contains(c))
        {
            return Err(self.invalid(format!(
                "extra training class {c} is already one of the split's own classes"
            )));
        }
        self.name = format!("{}+{}", self.name, classes.len());
        self.auxiliary_classes.extend(classes);
        Ok(self)
    }

    /// Fold `k` of a rotated split: every class label `c` of the split becomes `(c + k) mod n`,
    /// where `n` is one more than the largest label the split names, so the novel classes move
    /// together (MSR's `0, 4, …, 16` become `1, 5, …, 17` in fold 1) and every class is novel in
    /// some fold. Fold 0 is the split itself. Needs an exemplar rule: named exemplars belong to
    /// one fold only.
    pub fn rotated(mut self, k: usize) -> Result<Split, ProtocolError> {
        if k == 0 {
            return Ok(self);
        }
        if matches!(self.exemplars, Exemplars::Named(_)) {
            return Err(self.invalid(format!(
                "fold {k}: rotating the novel classes needs an exemplar rule, and this split names its exemplars (use a validation split instead)"
            )));
        }
        let n = self
            .novel_classes
            .iter()
            .chain(&self.auxiliary_classes)
            .max()
            .map_or(0, |m| m + 1);
        if k >= n {
            return Err(self.invalid(format!(
                "fold {k}: the split has {n} classes, so folds are 0..{n}"
            )));
        }
        let shift = |c: &mut usize| *c = (*c + k) % n;
        self.novel_classes.iter_mut().for_each(shift);
        self.auxiliary_classes.iter_mut().for_each(shift);
        self.name = format!("{}-fold{k}", self.name);
        self.description = format!("{} (rotated: labels + {k} mod {n})", self.description);
        Ok(self)
    }

    /// A validation split that never touches the novel (test) classes: the auxiliary classes at
    /// positions `p` with `p mod every == offset` become pseudo-novel (one exemplar each, by the
    /// split's rule, or the smallest replication when exemplars are named), the other auxiliary
    /// classes are trained on, and the novel classes are dropped. Settings are chosen here.
    pub fn validation(mut self, offset: usize, every: usize) -> Result<Split, ProtocolError> {
        if every < 2 || offset >= every {
            return Err(self.invalid(format!(
                "validation needs every >= 2 and offset < every, got offset {offset}, every {every}"
            )));
        }
        let pseudo: Vec<usize> = self
            .auxiliary_classes
            .iter()
            .enumerate()
            .filter(|(p, _)| p % every == offset)
            .map(|(_, &c)| c)
            .collect();
        let train: Vec<usize> = self
            .auxiliary_classes
            .iter()
            .copied()
            .filter(|c| !pseudo.contains(c))
            .collect();
        if pseudo.len() < 2 || train.is_empty() {
            return Err(self.invalid(format!(
                "validation offset {offset} of every {every} leaves {} pseudo-novel and {} training classes out of {} auxiliary ones; it needs at least 2 and 1",
                pseudo.len(),
                train.len(),
                self.auxiliary_classes.len()
            )));
        }
        let test = std::mem::take(&mut self.novel_classes);
        self.novel_classes = pseudo;
        self.auxiliary_classes = train;
        if matches!(self.exemplars, Exemplars::Named(_)) {
            self.exemplars = Exemplars::Rule {
                subject: None,
                view: None,
                setup: None,
            };
        }
        self.sweep.clear();
        self.name = format!("{}-val{offset}of{every}", self.name);
        self.description = format!(
            "validation of {}: pseudo-novel = auxiliary classes at positions {offset} mod {every}; the test classes {test:?} are left out",
            self.description
        );
        Ok(self)
    }

    /// Dataset label -> classifier index for training: auxiliary classes numbered in sweep
    /// order (so `with_auxiliary(k)` gives indices `0..k`).
    pub fn auxiliary_index(&self) -> BTreeMap<usize, usize> {
        self.auxiliary_classes
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i))
            .collect()
    }

    fn invalid(&self, message: String) -> ProtocolError {
        ProtocolError::Invalid {
            split: self.name.clone(),
            message,
        }
    }

    /// Checks the split on its own: no class both novel and auxiliary, no duplicates, every
    /// novel class has a named exemplar when exemplars are named.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let novel: BTreeSet<usize> = self.novel_classes.iter().copied().collect();
        if novel.len() != self.novel_classes.len() {
            return Err(self.invalid("a novel class is listed twice".into()));
        }
        if novel.is_empty() {
            return Err(self.invalid("has no novel classes".into()));
        }
        let aux: BTreeSet<usize> = self.auxiliary_classes.iter().copied().collect();
        if aux.len() != self.auxiliary_classes.len() {
            return Err(self.invalid("an auxiliary class is listed twice".into()));
        }
        if let Some(c) = novel.intersection(&aux).next() {
            return Err(self.invalid(format!("class {c} is both novel and auxiliary")));
        }
        if let Exemplars::Named(map) = &self.exemplars {
            for c in &self.novel_classes {
                if map.get(c).is_none_or(|v| v.is_empty()) {
                    return Err(self.invalid(format!("novel class {c} has no exemplar")));
                }
            }
            if let Some(c) = map.keys().find(|c| !novel.contains(c)) {
                return Err(
                    self.invalid(format!("exemplar given for class {c}, which is not novel"))
                );
            }
        }
        Ok(())
    }

    /// Assigns the samples described by `metas` (index = sample index): training samples of
    /// the auxiliary classes, one exemplar per novel class (or the named ones), and every other
    /// sample of the novel classes as a query. Excluded and unlabelled samples are dropped.
    pub fn apply(&self, metas: &[SampleMeta]) -> Result<Assignment, ProtocolError> {
        self.validate()?;
        let novel: BTreeSet<usize> = self.novel_classes.iter().copied().collect();
        let aux: BTreeSet<usize> = self.auxiliary_classes.iter().copied().collect();
        let kept = |m: &SampleMeta| !self.excluded.contains(&m.name);
        let exemplars: Vec<usize> = match &self.exemplars {
            Exemplars::Named(map) => {
                let by_name: BTreeMap<&str, usize> = metas
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.name.as_str(), i))
                    .collect();
                let mut out = Vec::new();
                for c in &self.novel_classes {
                    for name in &map[c] {
                        let Some(&i) = by_name.get(name.as_str()) else {
                            return Err(self.invalid(format!(
                                "exemplar {name} of class {c} is not in the dataset"
                            )));
                        };
                        if !kept(&metas[i]) {
                            return Err(
                                self.invalid(format!("exemplar {name} is in the excluded list"))
                            );
                        }
                        if metas[i].label != Some(*c) {
                            return Err(self.invalid(format!(
                                "exemplar {name} has label {:?}, expected novel class {c}",
                                metas[i].label
                            )));
                        }
                        out.push(i);
                    }
                }
                out
            }
            Exemplars::Rule {
                subject,
                view,
                setup,
            } => {
                let want = |w: &Option<u32>, v: Option<u32>| w.is_none() || *w == v;
                let mut out = Vec::new();
                for c in &self.novel_classes {
                    let best = metas
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| {
                            m.label == Some(*c)
                                && kept(m)
                                && want(subject, m.subject)
                                && want(view, m.view)
                                && want(setup, m.setup)
                        })
                        .min_by(|(_, a), (_, b)| {
                            (a.replication.unwrap_or(u32::MAX), &a.name)
                                .cmp(&(b.replication.unwrap_or(u32::MAX), &b.name))
                        });
                    match best {
                        Some((i, _)) => out.push(i),
                        None => {
                            return Err(self.invalid(format!(
                                "no sample of novel class {c} matches the exemplar rule (subject {subject:?}, view {view:?}, setup {setup:?})"
                            )))
                        }
                    }
                }
                out
            }
        };
        let is_exemplar: BTreeSet<usize> = exemplars.iter().copied().collect();
        let mut a = Assignment {
            split: self.name.clone(),
            exemplars,
            ..Assignment::default()
        };
        for (i, m) in metas.iter().enumerate() {
            let Some(l) = m.label else { continue };
            if !kept(m) {
                continue;
            }
            if aux.contains(&l) {
                a.train.push(i);
            } else if novel.contains(&l) && !is_exemplar.contains(&i) && self.queries.admits(m) {
                a.queries.push(i);
            }
        }
        Ok(a)
    }

    pub fn from_toml_file(path: &Path) -> Result<Split, ProtocolError> {
        let text = crate::bounded::read_to_string(path, crate::bounded::SMALL_FILE_BYTES).map_err(
            |source| ProtocolError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let base = path.parent().unwrap_or(Path::new("."));
        Split::from_toml_str(&text, &path.display().to_string(), base)
    }

    /// Parses the custom split format (see `docs/protocols.md`). `base` resolves a relative
    /// `excluded_file`.
    pub fn from_toml_str(text: &str, origin: &str, base: &Path) -> Result<Split, ProtocolError> {
        let err = |message: String| ProtocolError::File {
            origin: origin.to_string(),
            message,
        };
        let f: SplitFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let auxiliary_classes = match (f.auxiliary, f.num_classes) {
            (Some(a), _) => a,
            (None, Some(n)) => (0..n).filter(|l| !f.novel.contains(l)).collect(),
            (None, None) => return Err(err("give `auxiliary` (labels) or `num_classes`".into())),
        };
        let exemplars = match (f.exemplars, f.exemplar_rule) {
            (Some(map), None) => {
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    let c: usize = k.parse().map_err(|_| {
                        err(format!(
                            "[exemplars] key `{k}` is not a 0-based class label"
                        ))
                    })?;
                    out.insert(c, v.into_vec());
                }
                Exemplars::Named(out)
            }
            (None, Some(r)) => Exemplars::Rule {
                subject: r.subject,
                view: r.view,
                setup: r.setup,
            },
            _ => {
                return Err(err(
                    "give exactly one of [exemplars] or [exemplar_rule]".into()
                ))
            }
        };
        let mut excluded: BTreeSet<String> = f.excluded.into_iter().collect();
        if let Some(file) = f.excluded_file {
            let p = base.join(file);
            excluded.extend(read_name_list(&p)?);
        }
        let split = Split {
            name: f.name,
            description: f.description,
            novel_classes: f.novel,
            auxiliary_classes,
            exemplars,
            queries: f.queries,
            excluded,
            sweep: f.sweep,
        };
        split.validate().map_err(|e| err(e.to_string()))?;
        Ok(split)
    }

    /// A human-readable table; `classes` adds class names when given.
    pub fn table(&self, classes: Option<&[String]>) -> String {
        use std::fmt::Write;
        let name = |c: usize| {
            classes
                .and_then(|cl| cl.get(c))
                .map_or(String::new(), |n| format!("  {n}"))
        };
        let mut s = String::new();
        let _ = writeln!(s, "split {}: {}", self.name, self.description);
        let _ = writeln!(s, "novel classes ({}):", self.novel_classes.len());
        for &c in &self.novel_classes {
            let ex = match &self.exemplars {
                Exemplars::Named(m) => m.get(&c).map_or("-".into(), |v| v.join(",")),
                Exemplars::Rule { .. } => "(by rule)".into(),
            };
            let _ = writeln!(s, "  {c:>4}  {ex:<22}{}", name(c));
        }
        if let Exemplars::Rule {
            subject,
            view,
            setup,
        } = &self.exemplars
        {
            let f = |x: &Option<u32>| x.map_or("any".into(), |v| v.to_string());
            let _ = writeln!(
                s,
                "exemplar rule: subject {}, view {}, setup {}, smallest replication",
                f(subject),
                f(view),
                f(setup)
            );
        }
        let _ = writeln!(
            s,
            "auxiliary classes ({}, sweep order):",
            self.auxiliary_classes.len()
        );
        for &c in &self.auxiliary_classes {
            let _ = writeln!(s, "  {c:>4}{}", name(c));
        }
        if !self.sweep.is_empty() {
            let sw: Vec<String> = self.sweep.iter().map(|k| k.to_string()).collect();
            let _ = writeln!(s, "auxiliary sweep: {}", sw.join(", "));
        }
        let _ = writeln!(s, "excluded samples: {}", self.excluded.len());
        s
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table(None))
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    subject: Option<u32>,
    view: Option<u32>,
    setup: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitFile {
    name: String,
    #[serde(default)]
    description: String,
    novel: Vec<usize>,
    auxiliary: Option<Vec<usize>>,
    num_classes: Option<usize>,
    exemplars: Option<BTreeMap<String, OneOrMany>>,
    exemplar_rule: Option<RuleFile>,
    #[serde(default)]
    queries: QueryRule,
    #[serde(default)]
    excluded: Vec<String>,
    excluded_file: Option<PathBuf>,
    #[serde(default)]
    sweep: Vec<usize>,
}

/// Parses a list of sample names, one per line, skipping the prose header of NTU's
/// `*_samples_with_missing_skeletons.txt` (lines with spaces) and blank lines.
pub fn parse_name_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(char::is_whitespace) && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

pub fn read_name_list(path: &Path) -> Result<Vec<String>, ProtocolError> {
    let text = crate::bounded::read_to_string(path, crate::bounded::SMALL_FILE_BYTES).map_err(
        |source| ProtocolError::Io {
            path: path.to_path_buf(),
            source,
        },
    )?;
    Ok(parse_name_list(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, label: usize, subject: u32, view: u32, rep: u32) -> SampleMeta {
        SampleMeta {
            name: name.into(),
            label: Some(label),
            subject: Some(subject),
            view: Some(view),
            replication: Some(rep),
            ..SampleMeta::default()
        }
    }

    #[test]
    fn rule_picks_first_episode_and_keeps_it_out_of_queries() {
        let mut metas = Vec::new();
        for c in 0..10 {
            for s in 1..=3 {
                for e in [3, 1, 2] {
                    metas.push(meta(&format!("a{c}_s{s}_e{e}_v1"), c, s, 1, e));
                    metas.push(meta(&format!("a{c}_s{s}_e{e}_v2"), c, s, 2, e));
                }
            }
        }
        let split = Split::builtin("nwucla")
            .unwrap()
            .with_excluded(["a0_s2_e1_v1"]);
        let a = split.apply(&metas).unwrap();
        assert_eq!(a.exemplars.len(), 5);
        for (&i, c) in a.exemplars.iter().zip(&split.novel_classes) {
            assert_eq!(metas[i].name, format!("a{c}_s1_e1_v1"));
            assert!(!a.queries.contains(&i));
        }
        assert!(a.train.iter().all(|&i| metas[i].label.unwrap() % 2 == 1));
        assert!(a.queries.iter().all(|&i| metas[i].label.unwrap() % 2 == 0));
        assert!(!a.queries.iter().any(|&i| metas[i].name == "a0_s2_e1_v1"));
        assert_eq!(split.auxiliary_index()[&3], 1);
        assert_eq!(a.queries.len(), 5 * 18 - 5 - 1);
        assert_eq!(a.train.len(), 5 * 18);
    }

    #[test]
    fn folds_rotate_and_validation_never_touches_test_classes() {
        let msr = Split::builtin("msr").unwrap();
        let f1 = msr.clone().rotated(1).unwrap();
        assert_eq!(f1.novel_classes, vec![1, 5, 9, 13, 17]);
        let mut all: Vec<usize> = f1
            .novel_classes
            .iter()
            .chain(&f1.auxiliary_classes)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        assert!(f1.validate().is_ok());
        assert_eq!(msr.clone().rotated(0).unwrap(), msr);
        assert!(msr.clone().rotated(20).is_err());
        let named = Split::builtin("ntu60").unwrap().rotated(1).unwrap_err();
        assert!(named.to_string().contains("exemplar rule"), "{named}");

        let val = msr.clone().validation(1, 3).unwrap();
        assert_eq!(val.novel_classes, vec![2, 6, 10, 14, 18]);
        assert_eq!(val.auxiliary_classes.len(), 10);
        for c in &msr.novel_classes {
            assert!(!val.novel_classes.contains(c) && !val.auxiliary_classes.contains(c));
        }
        assert!(val.validate().is_ok());
        // Every auxiliary class is pseudo-novel in exactly one offset.
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|o| msr.clone().validation(o, 3).unwrap().novel_classes)
            .collect();
        seen.sort();
        let mut aux = msr.auxiliary_classes.clone();
        aux.sort();
        assert_eq!(seen, aux);
        // NW-UCLA has 5 auxiliary classes: offset 2 of 3 leaves one pseudo-novel class.
        let e = Split::builtin("nwucla")
            .unwrap()
            .validation(2, 3)
            .unwrap_err();
        assert!(e.to_string().contains("1 pseudo-novel"), "{e}");
        // Named exemplars fall back to a rule on the validation split.
        let v = Split::builtin("ntu60").unwrap().validation(0, 5).unwrap();
        assert!(matches!(v.exemplars, Exemplars::Rule { .. }));
        assert_eq!(v.novel_classes.len(), 10);
    }

    #[test]
    fn missing_exemplar_is_an_error_naming_it() {
        let split = Split::builtin("ntu60").unwrap();
        let metas = vec![meta("S001C001P001R001A001", 0, 1, 1, 1)];
        let e = split.apply(&metas).unwrap_err().to_string();
        assert!(e.contains("S001C003P008R001A001"), "{e}");
    }

    #[test]
    fn name_list_skips_header() {
        let t = "535 of the captured samples have missing data.\nIf you are working ...\n\nS001C002P005R002A008\nS001C002P006R001A008\n";
        assert_eq!(
            parse_name_list(t),
            vec!["S001C002P005R002A008", "S001C002P006R001A008"]
        );
    }

    #[test]
    fn custom_toml_round() {
        let t = r#"
name = "mine"
novel = [0, 3]
num_classes = 6
sweep = [2, 4]
excluded = ["x"]
[exemplars]
0 = "a"
3 = ["b", "c"]
[queries]
views = [2]
"#;
        let s = Split::from_toml_str(t, "mine.toml", Path::new(".")).unwrap();
        assert_eq!(s.auxiliary_classes, vec![1, 2, 4, 5]);
        assert_eq!(
            s.exemplars,
            Exemplars::Named(BTreeMap::from([
                (0, vec!["a".into()]),
                (3, vec!["b".into(), "c".into()])
            ]))
        );
        let bad = Split::from_toml_str(
            "name='x'\nnovel=[0]\nnum_classes=2\nwindow=3\n[exemplars]\n0='a'\n",
            "bad.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("bad.toml") && bad.contains("window"), "{bad}");
        let both = Split::from_toml_str(
            "name='x'\nnovel=[0]\nauxiliary=[0]\n[exemplars]\n0='a'\n",
            "b.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(both.contains("both novel and auxiliary"), "{both}");
    }
}
