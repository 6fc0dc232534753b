//! One-shot evaluation reports: counts, accuracy, per-class accuracy and the confusion matrix,
//! as JSON (serde) and Markdown, plus the atomic file write every output in this crate uses.

use std::path::{Path, PathBuf};

use crossglg_data::atomic::write_atomic;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read report {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("report {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("report input: {0}")]
    Invalid(String),
}

/// Accuracy of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub label: usize,
    pub name: String,
    /// Number of queries whose true class this is.
    pub queries: usize,
    pub correct: usize,
    /// `correct / queries`; 0 when the class has no queries.
    pub accuracy: f64,
}

/// The result of classifying a set of labelled queries into `classes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// How queries were classified, e.g. `cosine-nn` or `calibrated-logreg`.
    pub method: String,
    pub classes: Vec<String>,
    /// Exemplars per class (index = label).
    pub exemplars: Vec<usize>,
    pub queries: usize,
    pub correct: usize,
    /// Top-1 accuracy over all queries (micro average).
    pub accuracy: f64,
    /// Mean of the per-class accuracies over classes that have queries (macro average).
    pub mean_class_accuracy: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true][predicted]` query counts.
    pub confusion: Vec<Vec<usize>>,
    /// Free-form settings worth keeping next to the numbers (k, alpha, seed, ...).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The same method over random exemplar draws (`eval.draws`), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draws: Option<crate::eval::DrawSummary>,
}

impl EvalReport {
    /// Builds a report from true and predicted labels (both indices into `classes`).
    pub fn from_predictions(
        method: &str,
        classes: &[String],
        exemplars: Vec<usize>,
        truth: &[usize],
        predicted: &[usize],
    ) -> Result<Self, ReportError> {
        let k = classes.len();
        if truth.len() != predicted.len() {
            return Err(ReportError::Invalid(format!(
                "{} true labels but {} predictions",
                truth.len(),
                predicted.len()
            )));
        }
        let mut confusion = vec![vec![0usize; k]; k];
        for (i, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            if t >= k || p >= k {
                return Err(ReportError::Invalid(format!(
                    "query {i}: label {t} / prediction {p} outside the {k} classes"
                )));
            }
            confusion[t][p] += 1;
        }
        let per_class: Vec<ClassAccuracy> = (0..k)
            .map(|c| {
                let queries: usize = confusion[c].iter().sum();
                let correct = confusion[c][c];
                ClassAccuracy {
                    label: c,
                    name: classes[c].clone(),
                    queries,
                    correct,
                    accuracy: ratio(correct, queries),
                }
            })
            .collect();
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let with_queries: Vec<f64> = per_class
            .iter()
            .filter(|c| c.queries > 0)
            .map(|c| c.accuracy)
            .collect();
        let mean_class_accuracy = if with_queries.is_empty() {
            0.0
        } else {
            with_queries.iter().sum::<f64>() / with_queries.len() as f64
        };
        let mut exemplars = exemplars;
        exemplars.resize(k, 0);
        Ok(EvalReport {
            method: method.to_string(),
            classes: classes.to_vec(),
            exemplars,
            queries: truth.len(),
            correct,
            accuracy: ratio(correct, truth.len()),
            mean_class_accuracy,
            per_class,
            confusion,
            settings: Default::default(),
            draws: None,
        })
    }

    /// A report of `predicted` labels for the queries of a one-shot set.
    pub fn for_set(
        method: &str,
        set: &crate::eval::OneShotSet,
        predicted: &[usize],
    ) -> Result<Self, ReportError> {
        Self::from_predictions(
            method,
            &set.classes,
            set.exemplar_counts(),
            &set.query_labels,
            predicted,
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports always serialise")
    }

    /// A human-readable summary: totals, a per-class table and the confusion matrix.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("# One-shot evaluation: {}\n\n", self.method));
        s.push_str(&format!(
            "- top-1 accuracy: **{:.2} %** ({} / {} queries)\n- mean per-class accuracy: {:.2} %\n- classes: {}\n",
            100.0 * self.accuracy,
            self.correct,
            self.queries,
            100.0 * self.mean_class_accuracy,
            self.classes.len()
        ));
        if let Some(d) = &self.draws {
            s.push_str(&format!("- over random exemplar draws: **{}**\n", d.line()));
        }
        if !self.settings.is_empty() {
            let kv: Vec<String> = self
                .settings
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            s.push_str(&format!("- settings: {}\n", kv.join(", ")));
        }
        s.push_str(
            "\n| class | exemplars | queries | correct | accuracy % |\n|---|---:|---:|---:|---:|\n",
        );
        for c in &self.per_class {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} |\n",
                md_escape(&c.name),
                self.exemplars.get(c.label).copied().unwrap_or(0),
                c.queries,
                c.correct,
                100.0 * c.accuracy
            ));
        }
        s.push_str("\n## Confusion matrix (rows: true class, columns: predicted)\n\n|  |");
        for i in 0..self.classes.len() {
            s.push_str(&format!(" {i} |"));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(self.classes.len()));
        s.push('\n');
        for (i, row) in self.confusion.iter().enumerate() {
            let name = self.classes.get(i).map_or("?", String::as_str);
            s.push_str(&format!("| {i} {} |", md_escape(name)));
            for v in row {
                s.push_str(&format!(" {v} |"));
            }
            s.push('\n');
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, self.to_json().as_bytes()).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn write_markdown(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, self.to_markdown().as_bytes()).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn read_json(path: &Path) -> Result<Self, ReportError> {
        let text =
            crossglg_data::bounded::read_to_string(path, crossglg_data::bounded::SMALL_FILE_BYTES)
                .map_err(|source| ReportError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_confusion() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let r =
            EvalReport::from_predictions("x", &classes, vec![1, 1], &[0, 0, 1, 1], &[0, 1, 1, 1])
                .unwrap();
        assert_eq!(r.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert_eq!(r.correct, 3);
        assert!((r.accuracy - 0.75).abs() < 1e-12);
        assert!((r.mean_class_accuracy - 0.75).abs() < 1e-12);
        assert!(r.to_markdown().contains("| b | 1 | 2 | 2 | 100.00 |"));
        assert!(EvalReport::from_predictions("x", &classes, vec![], &[0], &[2]).is_err());
    }
}
