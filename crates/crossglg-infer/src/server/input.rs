//! Request bodies to skeletons in the model's layout: JSON joints or a file in any format the
//! readers know, then the layout check and the mapping.

use std::path::Path;

use crossglg_data::mapping::{map_skeleton, Mapping, BUILTIN_MAPPINGS};
use crossglg_data::read::{read_path, DirOptions};
use crossglg_data::{Layout, Skeleton};
use serde::Deserialize;

use super::api::ApiError;
use super::AppState;
use crate::embedder::input_problem;

/// Most joints per frame a JSON sequence may have (the largest shipped layout has 33).
pub const MAX_JOINTS: usize = 256;

/// One sequence: frames of joints, each joint `[x, y]` or `[x, y, z]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SequenceJson {
    #[serde(default)]
    name: Option<String>,
    frames: Vec<Vec<Vec<f64>>>,
}

/// A JSON body: one sequence, or several under `sequences`; an optional built-in `mapping`
/// from the layout they are in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BodyJson {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    frames: Option<Vec<Vec<Vec<f64>>>>,
    #[serde(default)]
    sequences: Option<Vec<SequenceJson>>,
    #[serde(default)]
    mapping: Option<String>,
}

/// Query options of the routes that take sequences.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputQuery {
    /// A file body's name: its extension picks the reader.
    #[serde(default)]
    pub filename: Option<String>,
    /// Layout of a `.npy` body (built-in names only).
    #[serde(default)]
    pub layout: Option<String>,
    /// Mapping from the input's layout (built-in names only).
    #[serde(default)]
    pub mapping: Option<String>,
    /// Recognise: include the decoded skeleton (first person) for display.
    #[serde(default)]
    pub skeleton: Option<bool>,
    /// Recognise: how many classes to list (default 5).
    #[serde(default)]
    pub top: Option<usize>,
    /// Recognise, with descriptions served: the description prior's weight (0..1, default 0.1).
    #[serde(default)]
    pub text_prior: Option<f32>,
}

/// A decoded input: its name, the skeleton in the model's layout, and the skeleton as sent
/// (before any mapping) for display.
pub(crate) struct Input {
    pub name: String,
    pub skeleton: Skeleton,
    pub original: Skeleton,
}

fn builtin_mapping(name: &str) -> Result<Mapping, ApiError> {
    // only shipped mappings: a name from a request must never become a path
    if !BUILTIN_MAPPINGS.iter().any(|(n, _)| *n == name) {
        let known: Vec<&str> = BUILTIN_MAPPINGS.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::bad(format!(
            "unknown mapping `{name}` (built-in: {})",
            known.join(", ")
        )));
    }
    Mapping::load(name).map_err(|e| ApiError::internal(e.to_string()))
}

/// Decodes a request body (JSON when the content type says so, else a file named by
/// `?filename=`) into skeletons in the model's layout.
pub(crate) fn decode(
    state: &AppState,
    json: bool,
    query: &InputQuery,
    body: &[u8],
) -> Result<Vec<Input>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad("the request body is empty"));
    }
    let (raw, mapping_name) = if json {
        decode_json(state, body)?
    } else {
        (decode_file(query, body)?, None)
    };
    let mapping = match mapping_name.as_deref().or(query.mapping.as_deref()) {
        Some(n) => Some(builtin_mapping(n)?),
        None => None,
    };
    if raw.is_empty() {
        return Err(ApiError::unprocessable("no sequences in the request"));
    }
    if raw.len() > state.opts.max_sequences {
        return Err(ApiError::too_large(format!(
            "{} sequences; at most {} per request",
            raw.len(),
            state.opts.max_sequences
        )));
    }
    raw.into_iter()
        .map(|(name, sk)| {
            if sk.frames == 0 {
                return Err(ApiError::unprocessable(format!("`{name}` has no frames")));
            }
            if sk.frames > state.opts.max_frames {
                return Err(ApiError::too_large(format!(
                    "`{name}` has {} frames; at most {}",
                    sk.frames, state.opts.max_frames
                )));
            }
            let mapped = to_model_layout(state, mapping.as_ref(), &name, &sk)?;
            if let Some(problem) = input_problem(&*state.model.embedder, &mapped) {
                return Err(ApiError::unprocessable(format!("`{name}`: {problem}")));
            }
            Ok(Input {
                name,
                skeleton: mapped,
                original: sk,
            })
        })
        .collect()
}

/// Maps `sk` into the model's layout: as it is when its joint count is the model's, else
/// through the request's mapping or the server's.
fn to_model_layout(
    state: &AppState,
    request_mapping: Option<&Mapping>,
    name: &str,
    sk: &Skeleton,
) -> Result<Skeleton, ApiError> {
    let layout: &Layout = &state.model.layout;
    let mapping = request_mapping.or(state.model.mapping.as_ref());
    if let Some(m) = mapping.filter(|m| m.source.num_joints() == sk.joints) {
        if request_mapping.is_some() || sk.joints != layout.num_joints() {
            return map_skeleton(sk, m)
                .map_err(|e| ApiError::unprocessable(format!("`{name}`: {e}")));
        }
    }
    if sk.joints == layout.num_joints() {
        return Ok(sk.clone());
    }
    Err(ApiError::unprocessable(format!(
        "`{name}` has {} joints; the model's layout `{}` has {}{}",
        sk.joints,
        layout.name,
        layout.num_joints(),
        match mapping {
            Some(m) => format!(
                " and the mapping's source layout `{}` has {}",
                m.source.name,
                m.source.num_joints()
            ),
            None => "; pass a built-in mapping (?mapping=NAME)".into(),
        }
    )))
}

type Decoded = (Vec<(String, Skeleton)>, Option<String>);

fn decode_json(state: &AppState, body: &[u8]) -> Result<Decoded, ApiError> {
    let b: BodyJson = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?;
    let seqs = match (b.frames, b.sequences) {
        (Some(frames), None) => vec![SequenceJson {
            name: b.name,
            frames,
        }],
        (None, Some(s)) => s,
        _ => {
            return Err(ApiError::bad(
                "give either `frames` (one sequence) or `sequences` (several)",
            ))
        }
    };
    let out = seqs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let name = s.name.unwrap_or_else(|| format!("sequence {i}"));
            let sk = frames_to_skeleton(state, &name, &s.frames)?;
            Ok((name, sk))
        })
        .collect::<Result<_, ApiError>>()?;
    Ok((out, b.mapping))
}

fn frames_to_skeleton(
    state: &AppState,
    name: &str,
    frames: &[Vec<Vec<f64>>],
) -> Result<Skeleton, ApiError> {
    if frames.len() > state.opts.max_frames {
        return Err(ApiError::too_large(format!(
            "`{name}` has {} frames; at most {}",
            frames.len(),
            state.opts.max_frames
        )));
    }
    let Some(first) = frames.first() else {
        return Err(ApiError::unprocessable(format!("`{name}` has no frames")));
    };
    let joints = first.len();
    if joints == 0 || joints > MAX_JOINTS {
        return Err(ApiError::unprocessable(format!(
            "`{name}` frame 0 has {joints} joints (1 to {MAX_JOINTS})"
        )));
    }
    let mut sk = Skeleton::zeros(1, frames.len(), joints, 3);
    for (t, f) in frames.iter().enumerate() {
        if f.len() != joints {
            return Err(ApiError::unprocessable(format!(
                "`{name}` frame {t} has {} joints, frame 0 has {joints}",
                f.len()
            )));
        }
        for (v, p) in f.iter().enumerate() {
            if !(2..=3).contains(&p.len()) {
                return Err(ApiError::unprocessable(format!(
                    "`{name}` frame {t} joint {v} has {} values; give [x, y] or [x, y, z]",
                    p.len()
                )));
            }
            for (c, &x) in p.iter().enumerate() {
                if !x.is_finite() || x.abs() > 1e6 {
                    return Err(ApiError::unprocessable(format!(
                        "`{name}` frame {t} joint {v} value {c} ({x}) is not a finite coordinate below 1e6"
                    )));
                }
                sk.set(0, t, v, c, x as f32);
            }
        }
    }
    Ok(sk)
}

/// A file body: written to a private temporary folder under its (sanitised) name, read by the
/// reader its extension picks, removed again.
fn decode_file(query: &InputQuery, body: &[u8]) -> Result<Vec<(String, Skeleton)>, ApiError> {
    let Some(filename) = query.filename.as_deref() else {
        return Err(ApiError::bad(
            "a file body needs ?filename=NAME (its extension picks the reader), or send JSON with Content-Type: application/json",
        ));
    };
    // the base name only, in a conservative alphabet: nothing from the request reaches a path
    let base = Path::new(filename)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if base.is_empty()
        || base.len() > 200
        || base.starts_with('.')
        || !base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ApiError::bad(format!(
            "filename `{filename}`: use letters, digits, `.`, `_` and `-` only"
        )));
    }
    if let Some(l) = &query.layout {
        Layout::builtin(l).map_err(|e| ApiError::bad(format!("layout: {e}")))?;
    }
    let dir = tempfile::tempdir().map_err(|e| ApiError::internal(e.to_string()))?;
    let path = dir.path().join(base);
    std::fs::write(&path, body).map_err(|e| ApiError::internal(e.to_string()))?;
    let opts = DirOptions {
        strict: true,
        ..DirOptions::default()
    };
    let (ds, _, _) = read_path(&path, query.layout.as_deref(), &opts)
        // the message names the temporary path: name the upload instead
        .map_err(|e| {
            let msg = e.to_string().replace(&path.display().to_string(), base);
            ApiError::unprocessable(msg)
        })?;
    Ok(ds
        .samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let name = if s.meta.name.is_empty() {
                format!("{base} #{i}")
            } else {
                s.meta.name
            };
            (name, s.skeleton)
        })
        .collect())
}
