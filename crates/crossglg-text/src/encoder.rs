//! A frozen sentence encoder on candle-transformers, loaded from a local Hugging Face style
//! folder (`config.json`, `tokenizer.json`, `model.safetensors`). Sentence embeddings are the
//! mean of the token states over the attention mask, L2-normalised, as sentence-transformers
//! computes them for all-MiniLM-L6-v2 (CLS pooling when the folder's `1_Pooling/config.json`
//! asks for it).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, debertav2};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::TextError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    /// BERT family (all-MiniLM-L6-v2, BERT, MPNet-free BERT clones): `model_type` "bert".
    Bert,
    /// DeBERTa-v2/v3 (`model_type` "deberta-v2"), the family the paper used.
    DebertaV2,
}

enum Model {
    Bert(Box<bert::BertModel>),
    DebertaV2(Box<debertav2::DebertaV2Model>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
}

pub struct SentenceEncoder {
    model: Model,
    tokenizer: Tokenizer,
    device: Device,
    kind: EncoderKind,
    pooling: Pooling,
    dim: usize,
    /// The folder name, recorded in text banks.
    pub name: String,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("dim", &self.dim)
            .finish()
    }
}

fn model_err(dir: &Path, message: impl Into<String>) -> TextError {
    TextError::Model {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

fn read_json(dir: &Path, name: &str) -> Result<Option<serde_json::Value>, TextError> {
    let p = dir.join(name);
    match crossglg_data::bounded::read_to_string(&p, crossglg_data::bounded::SMALL_FILE_BYTES) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| model_err(dir, format!("{name}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(model_err(dir, format!("{name}: {e}"))),
    }
}

impl SentenceEncoder {
    /// Loads the encoder in `dir`. The model type comes from `config.json`; the token limit
    /// from `sentence_bert_config.json` (`max_seq_length`) if present, else the model's position
    /// limit.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, TextError> {
        if !dir.is_dir() {
            return Err(model_err(
                dir,
                "not found (run scripts/fetch-minilm.sh for all-MiniLM-L6-v2, or set CROSSGLG_MODELS; `crossglg text models` lists what is found)",
            ));
        }
        let config = read_json(dir, "config.json")?
            .ok_or_else(|| model_err(dir, "config.json is missing"))?;
        let model_type = config
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("bert")
            .to_string();
        let weights: PathBuf = dir.join("model.safetensors");
        let pth: PathBuf = dir.join("pytorch_model.bin");
        let load_err = |source| TextError::Candle {
            context: format!("loading {}", dir.display()),
            source,
        };
        let vb = if weights.is_file() {
            // SAFETY of the mmap: the weights file is not modified while the encoder lives.
            #[allow(unsafe_code)]
            let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device) };
            vb.map_err(load_err)?
        } else if pth.is_file() {
            // Older checkpoints (e.g. microsoft/deberta-v2-xlarge) only ship a PyTorch pickle.
            VarBuilder::from_pth(&pth, DType::F32, device).map_err(load_err)?
        } else {
            return Err(model_err(
                dir,
                "has neither model.safetensors nor pytorch_model.bin",
            ));
        };
        let cerr = |source| TextError::Candle {
            context: format!("building the model from {}", dir.display()),
            source,
        };
        let (model, kind, dim, max_pos) = match model_type.as_str() {
            "bert" => {
                let cfg: bert::Config = serde_json::from_value(config.clone())
                    .map_err(|e| model_err(dir, format!("config.json: {e}")))?;
                let m = bert::BertModel::load(vb, &cfg).map_err(cerr)?;
                (
                    Model::Bert(Box::new(m)),
                    EncoderKind::Bert,
                    cfg.hidden_size,
                    cfg.max_position_embeddings,
                )
            }
            "deberta-v2" => {
                let cfg: debertav2::Config = serde_json::from_value(config.clone())
                    .map_err(|e| model_err(dir, format!("config.json: {e}")))?;
                // Checkpoints of DebertaV2Model keep their tensors under `deberta.` or at the root.
                let vb = if vb.contains_tensor("deberta.embeddings.word_embeddings.weight") {
                    vb.pp("deberta")
                } else {
                    vb
                };
                let m = debertav2::DebertaV2Model::load(vb, &cfg).map_err(cerr)?;
                (
                    Model::DebertaV2(Box::new(m)),
                    EncoderKind::DebertaV2,
                    cfg.hidden_size,
                    cfg.max_position_embeddings,
                )
            }
            other => {
                return Err(model_err(
                    dir,
                    format!("model_type `{other}` is not supported (bert, deberta-v2)"),
                ))
            }
        };
        let max_len = read_json(dir, "sentence_bert_config.json")?
            .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
            .map(|m| m as usize)
            .unwrap_or(max_pos)
            .min(max_pos);
        let pooling = match read_json(dir, "1_Pooling/config.json")? {
            Some(v) if v.get("pooling_mode_cls_token").and_then(|b| b.as_bool()) == Some(true) => {
                Pooling::Cls
            }
            _ => Pooling::Mean,
        };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_err(dir, format!("tokenizer.json: {e}")))?;
        // Pad each batch to its longest sentence (tokenizer.json files often pad to a fixed 128);
        // padding never changes the result because pooling honours the attention mask.
        let pad_id = tokenizer
            .get_padding()
            .map(|p| (p.pad_id, p.pad_token.clone()))
            .unwrap_or((0, "[PAD]".into()));
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: pad_id.0,
            pad_token: pad_id.1,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| model_err(dir, format!("tokenizer truncation: {e}")))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            kind,
            pooling,
            dim,
            name,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn kind(&self) -> EncoderKind {
        self.kind
    }

    /// Embeds `texts` in one batch: `[texts, dim]`, each row of unit length.
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor, TextError> {
        let cerr = |source| TextError::Candle {
            context: format!("encoding with {}", self.name),
            source,
        };
        if texts.is_empty() {
            return Tensor::zeros((0, self.dim), DType::F32, &self.device).map_err(cerr);
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| TextError::Other(format!("tokenizing with {}: {e}", self.name)))?;
        let n = enc.len();
        let len = enc[0].get_ids().len();
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            enc.iter().flat_map(|e| f(e).iter().copied()).collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (n, len), &self.device).map_err(cerr)?;
        let types =
            Tensor::from_vec(flat(&|e| e.get_type_ids()), (n, len), &self.device).map_err(cerr)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (n, len), &self.device)
            .map_err(cerr)?;
        let hidden = match &self.model {
            Model::Bert(m) => m.forward(&ids, &types, Some(&mask)),
            Model::DebertaV2(m) => {
                // Its own default mask is I64; keep to what it was written for.
                let mask = mask.to_dtype(DType::I64).map_err(cerr)?;
                m.forward(&ids, Some(types), Some(mask))
            }
        }
        .map_err(cerr)?;
        let pooled = (|| {
            let pooled = match self.pooling {
                Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
                Pooling::Mean => {
                    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                    // sentence-transformers clamps the token count at 1e-9.
                    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                    sum.broadcast_div(&count)?
                }
            };
            // L2 normalise with the same 1e-12 floor as torch.nn.functional.normalize.
            let norm = pooled
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norm)
        })()
        .map_err(cerr)?;
        Ok(pooled)
    }

    /// Like [`encode`](Self::encode), as plain rows.
    pub fn encode_vecs(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, TextError> {
        self.encode(texts)?
            .to_vec2::<f32>()
            .map_err(|source| TextError::Candle {
                context: format!("reading embeddings of {}", self.name),
                source,
            })
    }
}

/// Which text encoder a config names: `"hashed"` (see [`crate::hashed`]) or a sentence-encoder
/// folder. Read from and written as that one string.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EncoderSpec {
    Hashed,
    Folder(PathBuf),
}

impl From<String> for EncoderSpec {
    fn from(s: String) -> Self {
        if s == "hashed" {
            EncoderSpec::Hashed
        } else {
            EncoderSpec::Folder(PathBuf::from(s))
        }
    }
}

impl From<EncoderSpec> for String {
    fn from(e: EncoderSpec) -> Self {
        e.to_string()
    }
}

impl std::fmt::Display for EncoderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncoderSpec::Hashed => f.write_str("hashed"),
            EncoderSpec::Folder(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The folder a config's encoder path means. A relative path that is not a folder here (a run's
/// config read from another working folder than the one it was trained in, e.g.
/// `configs/../cache/models/all-MiniLM-L6-v2`) is looked up by its last part where models are
/// found ([`crate::models::find_model`]), with a warning naming both; anything else is taken as
/// it is, and loading it names it when it is missing.
pub fn locate_folder(dir: &Path) -> PathBuf {
    if dir.is_dir() || dir.is_absolute() {
        return dir.to_path_buf();
    }
    let found = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| crate::models::find_model(n).ok());
    match found {
        Some(f) => {
            tracing::warn!(
                "text encoder folder {} is not here; using {}, found by its name",
                dir.display(),
                f.display()
            );
            f
        }
        None => dir.to_path_buf(),
    }
}

/// Every text encoder behind one interface: a frozen sentence encoder or the hashed fallback.
#[derive(Debug)]
pub enum TextEncoder {
    Sentence(Box<SentenceEncoder>),
    Hashed { dim: usize },
}

impl TextEncoder {
    /// The encoder `spec` names; `hashed_dim` is the width of the hashed one.
    pub fn load(spec: &EncoderSpec, hashed_dim: usize, device: &Device) -> Result<Self, TextError> {
        Ok(match spec {
            EncoderSpec::Hashed => TextEncoder::Hashed { dim: hashed_dim },
            EncoderSpec::Folder(dir) => TextEncoder::Sentence(Box::new(SentenceEncoder::load(
                &locate_folder(dir),
                device,
            )?)),
        })
    }

    pub fn dim(&self) -> usize {
        match self {
            TextEncoder::Sentence(e) => e.dim(),
            TextEncoder::Hashed { dim } => (*dim).max(1),
        }
    }

    /// What text banks record as their `encoder`.
    pub fn name(&self) -> String {
        match self {
            TextEncoder::Sentence(e) => e.name.clone(),
            TextEncoder::Hashed { dim } => format!("hashed-{dim}"),
        }
    }

    /// One L2-normalised row per text.
    pub fn encode_vecs(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, TextError> {
        match self {
            TextEncoder::Sentence(e) => e.encode_vecs(texts),
            TextEncoder::Hashed { dim } => Ok(texts
                .iter()
                .map(|t| crate::hashed::hashed_embedding(t, *dim))
                .collect()),
        }
    }
}
