//! The candle sentence encoder against sentence-transformers, and the text bank round trip.
//! Needs all-MiniLM-L6-v2 where `crossglg_text::default_model` finds it (the checkout's
//! `cache/models`, put there by `scripts/fetch-minilm.sh`); fails when it is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use crossglg_data::Layout;
use crossglg_text::bank::{embed_descriptions, EmbedOptions, TextBank};
use crossglg_text::{
    default_model, ClassDescription, DescriptionFile, Provenance, SentenceEncoder, TextEncoder,
};

fn minilm() -> SentenceEncoder {
    let dir = default_model().unwrap_or_else(|e| panic!("{e}"));
    SentenceEncoder::load(&dir, &Device::Cpu).unwrap()
}

fn fixture() -> (Vec<String>, Vec<Vec<f32>>) {
    let p: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/minilm_reference.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let sentences = serde_json::from_value(v["sentences"].clone()).unwrap();
    let emb = serde_json::from_value(v["embeddings"].clone()).unwrap();
    (sentences, emb)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers() {
    let enc = minilm();
    assert_eq!(enc.dim(), 384);
    let (sentences, reference) = fixture();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    // One padded batch, and each sentence alone: both must match.
    let batch = enc.encode_vecs(&refs).unwrap();
    for (i, (got, want)) in batch.iter().zip(&reference).enumerate() {
        let c = cosine(got, want);
        assert!(c >= 0.999, "sentence {i} `{}`: cosine {c}", sentences[i]);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    let worst = batch
        .iter()
        .zip(&reference)
        .map(|(a, b)| cosine(a, b))
        .fold(1.0f32, f32::min);
    eprintln!("all-MiniLM-L6-v2 vs sentence-transformers: lowest cosine {worst:.7}");
    let alone = enc.encode_vecs(&refs[..1]).unwrap();
    assert!(cosine(&alone[0], &reference[0]) >= 0.999);
    // Different sentences really are different (a constant output would fail here).
    assert!(cosine(&batch[0], &batch[2]) < 0.9);
}

#[test]
fn text_bank_round_trip() {
    let enc = minilm();
    let layout = Layout::builtin("ntu25").unwrap();
    let mk = |id: usize, name: &str, global: &str, keys: &[&str]| ClassDescription {
        id,
        name: name.into(),
        global: global.into(),
        key_joints: keys.iter().map(|s| s.to_string()).collect(),
        local: layout
            .joints
            .iter()
            .map(|j| {
                let t = if j.contains("hand") {
                    format!("{name}: the {j} moves")
                } else {
                    "stays still".into()
                };
                (j.clone(), t)
            })
            .collect::<BTreeMap<_, _>>(),
    };
    let mut file = DescriptionFile::new("toy", "ntu25", Provenance::default());
    // Out of id order on purpose: the bank is in id order.
    file.classes = vec![
        mk(1, "kick", "A kick with the right foot.", &[]),
        mk(
            0,
            "drink water",
            "Lifting a cup to the mouth.",
            &["right_hand", "head"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bank.safetensors");
    let opts = EmbedOptions {
        batch: 5,
        ..Default::default()
    };
    let enc = TextEncoder::Sentence(Box::new(enc));
    let s = embed_descriptions(&file, &layout, &enc, &opts, &out).unwrap();
    assert_eq!((s.classes, s.joints, s.dim), (2, 25, 384));
    // 2 globals + per class 4 hand texts + 1 shared "stays still".
    assert_eq!(s.unique_texts, 2 + 2 * 4 + 1);

    let bank = TextBank::load(&out, &Device::Cpu).unwrap();
    assert_eq!(bank.classes, ["drink water", "kick"]);
    assert_eq!(bank.joints, layout.joints);
    assert_eq!(bank.global.dims(), [2, 384]);
    assert_eq!(bank.local.dims(), [2, 25, 384]);
    assert_eq!(bank.key_joints.dims(), [2, 25]);
    assert_eq!(bank.meta["encoder"], "all-MiniLM-L6-v2");
    let g = bank.global.to_vec2::<f32>().unwrap();
    let want = enc.encode_vecs(&["Lifting a cup to the mouth."]).unwrap();
    assert!(cosine(&g[0], &want[0]) > 0.9999);
    let local = bank.local.to_vec3::<f32>().unwrap();
    let still = enc.encode_vecs(&["stays still"]).unwrap();
    assert!(
        cosine(&local[1][0], &still[0]) > 0.9999,
        "spine_base of class 1"
    );
    let k = bank.key_joints.to_vec2::<f32>().unwrap();
    for row in &k {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    assert!(
        k[0][3] > 0.4 && k[0][11] > 0.4,
        "drink: head and right_hand"
    );
    assert!(k[1][19] > k[1][11], "kick: right_foot over right_hand");

    // A bank that is not one.
    std::fs::write(dir.path().join("x.safetensors"), b"nope").unwrap();
    let e = TextBank::load(&dir.path().join("x.safetensors"), &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("x.safetensors"));
}

/// The DeBERTa-v2 path on a tiny randomly initialised model (no small DeBERTa checkpoint is
/// available to tests): it loads from a folder, gives unit vectors of the right width, and the
/// attention mask makes padding irrelevant. Numerical agreement with transformers is NOT
/// checked here.
#[test]
fn debertav2_loads_and_ignores_padding() {
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::debertav2;

    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "model_type": "deberta-v2", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512, "type_vocab_size": 0, "initializer_range": 0.02,
        "layer_norm_eps": 1e-7, "relative_attention": true, "max_relative_positions": -1,
        "position_biased_input": false, "pos_att_type": ["p2c", "c2p"], "position_buckets": 256,
        "norm_rel_ebd": "layer_norm", "share_att_key": true, "pad_token_id": 0
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let cfg: debertav2::Config = serde_json::from_value(config).unwrap();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &Device::Cpu);
    debertav2::DebertaV2Model::load(vb, &cfg).unwrap();
    vm.save(dir.path().join("model.safetensors")).unwrap();
    // Any WordPiece tokenizer with the same vocabulary size will do.
    let minilm_dir = default_model().unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        minilm_dir.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-minilm.sh", minilm_dir.display()));

    let enc = SentenceEncoder::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(enc.kind(), crossglg_text::EncoderKind::DebertaV2);
    assert_eq!(enc.dim(), 32);
    let texts = [
        "a short one",
        "a considerably longer sentence that forces padding of the first",
    ];
    let batch = enc.encode_vecs(&texts).unwrap();
    let alone = enc.encode_vecs(&texts[..1]).unwrap();
    for row in &batch {
        assert!(row.iter().all(|x| x.is_finite()));
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    assert!(
        cosine(&batch[0], &alone[0]) > 0.9999,
        "padding changed the embedding"
    );
    assert!(cosine(&batch[0], &batch[1]) < 0.9999);
}

/// A run's config names its encoder by the path it had where the run was trained; read from
/// another working folder, that relative path is looked up by its name where models are found.
#[test]
fn a_relative_encoder_folder_that_is_not_here_is_found_by_name() {
    use crossglg_text::encoder::locate_folder;
    let want = default_model().unwrap_or_else(|e| panic!("{e}"));
    let moved = Path::new("somewhere/else/all-MiniLM-L6-v2");
    assert!(!moved.exists());
    assert_eq!(
        locate_folder(moved).canonicalize().unwrap(),
        want.canonicalize().unwrap()
    );
    assert!(TextEncoder::load(
        &crossglg_text::EncoderSpec::Folder(moved.into()),
        0,
        &Device::Cpu
    )
    .is_ok());
    // a name nowhere to be found, and an absolute path, stay as given (loading names them)
    let unknown = Path::new("somewhere/else/no-such-encoder-xyz");
    assert_eq!(locate_folder(unknown), unknown);
    let absolute = Path::new("/somewhere/else/all-MiniLM-L6-v2");
    assert_eq!(locate_folder(absolute), absolute);
    let err = TextEncoder::load(
        &crossglg_text::EncoderSpec::Folder(unknown.into()),
        0,
        &Device::Cpu,
    )
    .expect_err("no such encoder")
    .to_string();
    assert!(err.contains("no-such-encoder-xyz"), "{err}");
}
