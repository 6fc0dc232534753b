//! Where sentence-encoder folders are found, in the order a user expects, and never a path
//! compiled in from the machine that built the binary:
//!
//! 1. `$CROSSGLG_MODELS` (a folder of model folders);
//! 2. `$CROSSGLG_HOME/models`;
//! 3. the platform's cache folder: `$XDG_CACHE_HOME/crossglg/models` or
//!    `~/.cache/crossglg/models` (Linux), `~/Library/Caches/crossglg/models` (macOS),
//!    `%LOCALAPPDATA%\crossglg\models` (Windows);
//! 4. `cache/models` in the current folder or one of its parents (a source checkout, where
//!    `scripts/fetch-minilm.sh` puts it);
//! 5. the Hugging Face cache (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`), where a model
//!    `org/name` lives under `models--org--name/snapshots/<revision>/`.
//!
//! A model folder holds `config.json`, `tokenizer.json` and `model.safetensors`.

use std::path::{Path, PathBuf};

/// One place searched, and why it is searched.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRoot {
    pub path: PathBuf,
    pub source: &'static str,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_path("HOME").or_else(|| env_path("USERPROFILE"))
}

/// The platform's per-user cache folder.
fn cache_home() -> Option<PathBuf> {
    if cfg!(target_os = "macos") {
        return home().map(|h| h.join("Library/Caches"));
    }
    if cfg!(windows) {
        return env_path("LOCALAPPDATA");
    }
    env_path("XDG_CACHE_HOME").or_else(|| home().map(|h| h.join(".cache")))
}

/// The folders that hold model folders, in search order (the Hugging Face cache is searched
/// by [`find_model`] separately, by its own layout).
pub fn model_roots() -> Vec<ModelRoot> {
    let mut roots = Vec::new();
    let mut push = |path: PathBuf, source| roots.push(ModelRoot { path, source });
    if let Some(p) = env_path("CROSSGLG_MODELS") {
        push(p, "$CROSSGLG_MODELS");
    }
    if let Some(p) = env_path("CROSSGLG_HOME") {
        push(p.join("models"), "$CROSSGLG_HOME/models");
    }
    if let Some(c) = cache_home() {
        push(c.join("crossglg").join("models"), "the user cache folder");
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd
            .ancestors()
            .map(|a| a.join("cache").join("models"))
            .find(|d| d.is_dir())
        {
            push(d, "a source checkout (cache/models)");
        }
    }
    roots
}

/// The Hugging Face hub cache folder, when there is one.
pub fn hf_hub() -> Option<PathBuf> {
    env_path("HF_HUB_CACHE")
        .or_else(|| env_path("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| cache_home().map(|c| c.join("huggingface").join("hub")))
        .filter(|p| p.is_dir())
}

/// True for a folder with what a sentence encoder needs.
pub fn is_model_dir(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// The model folders directly inside `dir`, sorted (none when it cannot be read).
fn model_dirs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_model_dir(p))
        .collect();
    found.sort();
    found
}

/// A model's snapshot in the Hugging Face cache: `name` as `org/name` or a bare name
/// (`sentence-transformers/` is tried for bare names).
fn in_hf_cache(hub: &Path, name: &str) -> Option<PathBuf> {
    let repos: Vec<String> = if name.contains('/') {
        vec![name.replace('/', "--")]
    } else {
        vec![format!("sentence-transformers--{name}")]
    };
    for repo in repos {
        let snaps = hub.join(format!("models--{repo}")).join("snapshots");
        if let Some(p) = model_dirs_in(&snaps).pop() {
            return Some(p);
        }
    }
    None
}

/// The folder of model `name` (e.g. `all-MiniLM-L6-v2`), searched in the order above; the error
/// lists every place looked at.
pub fn find_model(name: &str) -> Result<PathBuf, String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let mut looked = Vec::new();
    for r in model_roots() {
        let d = r.path.join(base);
        if is_model_dir(&d) {
            return Ok(d);
        }
        looked.push(format!("{} ({})", d.display(), r.source));
    }
    if let Some(hub) = hf_hub() {
        if let Some(d) = in_hf_cache(&hub, name) {
            return Ok(d);
        }
        looked.push(format!("{} (the Hugging Face cache)", hub.display()));
    }
    Err(format!(
        "model `{name}` not found; looked in {}. Run scripts/fetch-minilm.sh, or set CROSSGLG_MODELS",
        looked.join(", ")
    ))
}

/// Every model folder found, with where it was found: what `crossglg text models` prints.
pub fn list_models() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for r in model_roots() {
        out.extend(
            model_dirs_in(&r.path)
                .into_iter()
                .map(|p| (p, r.source.to_string())),
        );
    }
    if let Some(hub) = hf_hub() {
        if let Ok(entries) = std::fs::read_dir(&hub) {
            let mut repos: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            repos.sort();
            for repo in repos {
                let name = repo
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let Some(id) = name.strip_prefix("models--") else {
                    continue;
                };
                if let Some(d) = in_hf_cache(&hub, &id.replace("--", "/")) {
                    out.push((d, "the Hugging Face cache".into()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_model(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(dir.join(f), "{}").unwrap();
        }
    }

    #[test]
    fn hugging_face_snapshots_are_found() {
        let hub = tempfile::tempdir().unwrap();
        let snap = hub
            .path()
            .join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots/abc123");
        fake_model(&snap);
        assert_eq!(
            in_hf_cache(hub.path(), "all-MiniLM-L6-v2"),
            Some(snap.clone())
        );
        assert_eq!(
            in_hf_cache(hub.path(), "sentence-transformers/all-MiniLM-L6-v2"),
            Some(snap)
        );
        assert_eq!(in_hf_cache(hub.path(), "other"), None);
    }
}
