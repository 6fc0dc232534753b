//! A small synthetic training config shared by the export and CUDA tests.

use std::path::Path;

use crossglg_train::config::TrainConfig;

/// The demo's descriptions, compiled in: the CUDA test executable is carried to a GPU machine
/// without the source tree.
pub const DESCRIPTIONS: &str = include_str!("../../demo/synthetic-descriptions.json");

/// Six synthetic motions, one person, a two-block encoder of `kind` with both guidances in
/// `recipe`'s form, hashed text from `desc` (a copy of [`DESCRIPTIONS`]).
pub fn small_config(
    kind: &str,
    recipe: &str,
    device: &str,
    epochs: usize,
    desc: &Path,
) -> TrainConfig {
    let text = format!(
        r#"
recipe = "{recipe}"
seed = 5
epochs = {epochs}
batch_size = 16
device = "{device}"
[data]
split = "synthetic"
[data.synthetic]
classes = ["wave", "punch", "kick", "squat", "jump", "clap"]
samples_per_class = 8
subjects = 4
views = 2
frames = [24, 32]
[text]
descriptions = {desc:?}
encoder = "hashed"
hashed_dim = 32
[preprocess]
frames = 16
persons = 1
[model]
guidance = "both"
[model.encoder]
kind = "{kind}"
num_persons = 1
blocks = [{{ channels = 8, stride = 1 }}, {{ channels = 16, stride = 2 }}]
[model.jid]
after_block = 1
hidden = 8
[model.interaction]
dim = 16
heads = 2
depth = 1
[eval]
draws = 0
"#
    );
    TrainConfig::from_toml_str(&text, "test config").unwrap()
}

/// Writes [`DESCRIPTIONS`] into `dir` and returns its path.
pub fn write_descriptions(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("descriptions.json");
    std::fs::write(&p, DESCRIPTIONS).unwrap();
    p
}

/// The largest absolute difference between two tensors of one shape.
#[allow(dead_code)] // not every test file that includes this module compares tensors
pub fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
