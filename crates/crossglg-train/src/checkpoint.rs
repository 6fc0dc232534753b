//! Checkpoints: one safetensors file holding the model weights (`model.*`), the optimiser
//! state (`opt.*`) and, in its metadata, the fully resolved config and the training position.
//! Written through the tagged-file layer (atomically), so a crash never leaves half a file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use crossglg_data::tagged::{self, TaggedError, TaggedFile, FORMAT_KEY};

/// The tagged-file kind and version of checkpoints (`format` = `crossglg-checkpoint/1`).
const CHECKPOINT_KIND: &str = "checkpoint";
const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint: {0}")]
    File(#[from] TaggedError),
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
        let mut meta = self.metadata.clone();
        meta.remove(FORMAT_KEY);
        meta.insert("config".into(), self.config_toml.clone());
        meta.insert(
            "position".into(),
            serde_json::to_string(&self.position).expect("a position serialises"),
        );
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let data: Vec<(String, &Tensor)> = names
            .iter()
            .map(|n| (n.to_string(), &self.tensors[*n]))
            .collect();
        tagged::write(path, CHECKPOINT_KIND, CHECKPOINT_VERSION, meta, data)?;
        Ok(())
    }

    pub fn load(path: &Path, device: &Device) -> Result<Self, CheckpointError> {
        let f = TaggedFile::read(path, CHECKPOINT_KIND, CHECKPOINT_VERSION)?;
        Self::from_tagged(f, device)
    }

    /// As [`Checkpoint::load`], for bytes already read (`path` names them in errors).
    pub fn from_bytes(
        path: &Path,
        bytes: Vec<u8>,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        let f = TaggedFile::from_bytes(path, bytes, CHECKPOINT_KIND, CHECKPOINT_VERSION)?;
        Self::from_tagged(f, device)
    }

    fn from_tagged(f: TaggedFile, device: &Device) -> Result<Self, CheckpointError> {
        let path = f.path.clone();
        let path = path.as_path();
        let config_toml = f.meta_str("config")?.to_string();
        let position: Position = f.meta_json("position")?;
        let tensors = candle_core::safetensors::load_buffer(f.bytes(), device).map_err(|e| {
            CheckpointError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let meta = f.meta;
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
