//! Checkpoints: one safetensors file holding the model weights (`model.*`), the optimiser
//! state (`opt.*`) and, in its metadata, the fully resolved config and the training position.
//! Files are written to a temporary name and renamed, so a crash never leaves half a file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write checkpoint {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot read checkpoint {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// Where training stands when a checkpoint is written.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Epochs fully completed.
    pub epoch: usize,
    /// Optimiser steps taken so far.
    pub step: u64,
}

pub struct Checkpoint {
    pub tensors: HashMap<String, Tensor>,
    pub config_toml: String,
    pub position: Position,
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let err = |message: String| CheckpointError::Write {
            path: path.to_path_buf(),
            message,
        };
        let mut meta = self.metadata.clone();
        meta.insert("format".into(), "crossglg-checkpoint/1".into());
        meta.insert("config".into(), self.config_toml.clone());
        meta.insert(
            "position".into(),
            serde_json::to_string(&self.position).map_err(|e| err(e.to_string()))?,
        );
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let data: Vec<(&str, &Tensor)> = names
            .iter()
            .map(|n| (n.as_str(), &self.tensors[*n]))
            .collect();
        crossglg_data::atomic::write_atomic_with(path, |tmp| {
            safetensors::serialize_to_file(data.iter().map(|(n, t)| (*n, *t)), Some(meta), tmp)
                .map_err(std::io::Error::other)
        })
        .map_err(|e| err(e.to_string()))
    }

    pub fn load(path: &Path, device: &Device) -> Result<Self, CheckpointError> {
        let err = |message: String| CheckpointError::Read {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| err(format!("not a safetensors file ({e})")))?;
        let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some("crossglg-checkpoint/1") {
            return Err(err(
                "not a crossglg checkpoint (metadata `format` is missing or unknown)".into(),
            ));
        }
        let config_toml = meta
            .get("config")
            .cloned()
            .ok_or_else(|| err("metadata has no `config`".into()))?;
        let position: Position = serde_json::from_str(
            meta.get("position")
                .ok_or_else(|| err("metadata has no `position`".into()))?,
        )
        .map_err(|e| err(format!("bad `position`: {e}")))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| err(e.to_string()))?;
        Ok(Checkpoint {
            tensors,
            config_toml,
            position,
            metadata: meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let t = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let ck = Checkpoint {
            tensors: HashMap::from([("model.w".to_string(), t.clone())]),
            config_toml: "seed = 1\n".into(),
            position: Position { epoch: 3, step: 30 },
            metadata: HashMap::new(),
        };
        ck.save(&p).unwrap();
        let back = Checkpoint::load(&p, &Device::Cpu).unwrap();
        assert_eq!(back.position, ck.position);
        assert_eq!(back.config_toml, "seed = 1\n");
        let w = back.tensors["model.w"].to_vec2::<f32>().unwrap();
        assert_eq!(w, t.to_vec2::<f32>().unwrap());

        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"hello").unwrap();
        let e = Checkpoint::load(&junk, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
    }
}
