//! `crossglg text …`: describe (LLM), validate, show, embed, import.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::{Args, Subcommand, ValueEnum};
use crossglg_data::Layout;
use crossglg_infer::agreement::MatchBy;
use crossglg_text::bank::EmbedOptions;
use crossglg_text::encoder::EncoderSpec;
use crossglg_text::import::{import_gap, import_skeletonagent, GapSet};
use crossglg_text::llm::describe_to_file;
use crossglg_text::{
    embed_descriptions, show_class, validate_path, DescriptionFile, KeyJointConfig, LlmConfig,
    PromptKind, PromptTemplate, SentenceEncoder, TextEncoder,
};
use crossglg_train::config::TextConfig;

#[derive(Subcommand)]
pub enum TextCommand {
    /// Ask an OpenAI-compatible chat endpoint for the global and per-joint descriptions of
    /// every class; answers are cached per class, so an interrupted run resumes.
    Describe(Box<DescribeArgs>),
    /// Write a description file whose every text is the class name, for training without an
    /// LLM (about half the descriptions' one-shot gain on the data measured; docs/text.md).
    Names(ClassListArgs),
    /// Check a description file against its layout.
    Validate {
        file: PathBuf,
        /// Layout to check against (default: the file's own).
        #[arg(long)]
        layout: Option<String>,
    },
    /// Print the texts of one class and its key joints.
    Show {
        file: PathBuf,
        /// Class name or id.
        class: String,
    },
    /// Embed a description file with a frozen sentence encoder into a text bank.
    Embed(EmbedArgs),
    /// Convert published descriptions (GAP, SkeletonAgent) into this project's format.
    Import(ImportArgs),
    /// List the sentence-encoder folders found, and where each was found.
    Models,
    /// Compare two description sets of the same classes (matched by name): do they call the
    /// same classes alike, how distinct is each set's text, does each class's text find its own
    /// class in the other set (docs/text.md).
    Compare(CompareArgs),
}

#[derive(Args)]
pub struct CompareArgs {
    a: PathBuf,
    b: PathBuf,
    /// Sentence-encoder folder, or `hashed` (word hashing, no model); default all-MiniLM-L6-v2
    /// wherever `crossglg text models` finds it.
    #[arg(long)]
    model: Option<String>,
    /// Pair the classes by id instead of by name (two files of one dataset whose authors name
    /// the classes differently).
    #[arg(long)]
    by_id: bool,
    /// List every class (default: the five whose two texts differ most).
    #[arg(long)]
    classes: bool,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
}

/// The classes a description file is written for, and where it goes.
#[derive(Args)]
pub struct ClassListArgs {
    /// Class names, one per line.
    #[arg(long)]
    classes: PathBuf,
    /// Layout whose joints the file describes (and the local prompt lists).
    #[arg(long)]
    layout: String,
    /// Dataset name written into the file.
    #[arg(long)]
    dataset: String,
    /// The description file to write (replaced whole, never half-written).
    #[arg(long, short)]
    out: PathBuf,
}

impl ClassListArgs {
    /// The class names (at least one) and the layout.
    fn load(&self) -> Result<(Vec<String>, Layout)> {
        let classes = crossglg_data::read::read_class_names(&self.classes)?;
        if classes.is_empty() {
            bail!("{}: no class names", self.classes.display());
        }
        Ok((classes, Layout::load(&self.layout)?))
    }
}

#[derive(Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    list: ClassListArgs,
    /// Endpoint, e.g. https://api.openai.com/v1 or http://localhost:8000 (vLLM, llama.cpp, Ollama).
    #[arg(long, default_value = "https://api.openai.com/v1")]
    base_url: String,
    #[arg(long)]
    model: String,
    /// Environment variable holding the API key (never printed); "" sends none.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Prompt templates (default: the built-in ones).
    #[arg(long)]
    global_prompt: Option<PathBuf>,
    #[arg(long)]
    local_prompt: Option<PathBuf>,
    /// Answer cache folder (default: cache/llm/<dataset>).
    #[arg(long)]
    cache: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.2)]
    temperature: f32,
    /// Longest answer, in tokens (default: the server's limit).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling seed sent with every request (servers that support it answer reproducibly).
    #[arg(long)]
    seed: Option<u64>,
    /// Ask for structured output (`response_format` with a JSON schema of the answer), which
    /// OpenAI's and llama.cpp's servers enforce; leave off for servers that reject it.
    #[arg(long)]
    structured: bool,
}

#[derive(Args)]
pub struct EmbedArgs {
    file: PathBuf,
    /// Sentence-encoder folder (config.json, tokenizer.json, model.safetensors); default
    /// all-MiniLM-L6-v2 wherever `crossglg text models` finds it.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Share of the key-joint target spread over all joints.
    #[arg(long)]
    floor: Option<f32>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ImportSource {
    GapNtu120,
    GapNwucla,
    Skeletonagent120,
    Skeletonagent60,
}

#[derive(Args)]
pub struct ImportArgs {
    #[arg(value_enum)]
    source: ImportSource,
    /// The published folder (`text-descriptions/gap` or `text-descriptions/skeletonagent`).
    dir: PathBuf,
    #[arg(long)]
    layout: String,
    #[arg(long, short)]
    out: PathBuf,
}

pub fn run(cmd: TextCommand) -> Result<()> {
    match cmd {
        TextCommand::Describe(a) => run_describe(*a),
        TextCommand::Names(a) => {
            let (names, layout) = a.load()?;
            let file = DescriptionFile::names_only(&a.dataset, &layout, &names);
            crossglg_text::validate(&file, &layout, &a.out.display().to_string())?;
            file.save(&a.out)?;
            println!(
                "wrote {} ({} classes, names only)",
                a.out.display(),
                names.len()
            );
            Ok(())
        }
        TextCommand::Validate { file, layout } => {
            let layout = layout.map(|l| Layout::load(&l)).transpose()?;
            println!("{}", validate_path(&file, layout.as_ref())?);
            Ok(())
        }
        TextCommand::Show { file, class } => {
            let d = DescriptionFile::load(&file)?;
            let layout = Layout::load_named_in(&d.layout, &file)?;
            print!(
                "{}",
                show_class(&d, &class, &layout, &KeyJointConfig::default())?
            );
            Ok(())
        }
        TextCommand::Embed(a) => run_embed(a),
        TextCommand::Import(a) => run_import(a),
        TextCommand::Compare(a) => run_compare(a),
        TextCommand::Models => {
            let roots = crossglg_text::models::model_roots();
            println!("searched, in order:");
            for r in &roots {
                println!("  {} ({})", r.path.display(), r.source);
            }
            match crossglg_text::models::hf_hub() {
                Some(h) => println!("  {} (the Hugging Face cache)", h.display()),
                None => println!("  (no Hugging Face cache)"),
            }
            let found = crossglg_text::models::list_models();
            if found.is_empty() {
                println!(
                    "no sentence encoder found; scripts/fetch-minilm.sh fetches all-MiniLM-L6-v2"
                );
            }
            for (dir, source) in found {
                println!("{}\t{source}", dir.display());
            }
            Ok(())
        }
    }
}

fn run_describe(a: DescribeArgs) -> Result<()> {
    let (classes, layout) = a.list.load()?;
    let cache = a
        .cache
        .unwrap_or_else(|| PathBuf::from("cache/llm").join(&a.list.dataset));
    let mut cfg = LlmConfig::new(&a.model, &a.list.dataset, &cache);
    cfg.base_url = a.base_url;
    cfg.api_key_env = Some(a.api_key_env).filter(|s| !s.is_empty());
    cfg.global_prompt =
        PromptTemplate::builtin_or_file(PromptKind::Global, a.global_prompt.as_deref())?;
    cfg.local_prompt =
        PromptTemplate::builtin_or_file(PromptKind::Local, a.local_prompt.as_deref())?;
    cfg.concurrency = a.concurrency.max(1);
    cfg.timeout = Duration::from_secs(a.timeout_s);
    cfg.retries = a.retries;
    cfg.seed = a.seed;
    cfg.structured = a.structured;
    cfg.temperature = a.temperature;
    cfg.max_tokens = a.max_tokens;
    cfg.progress = true;
    let stats = describe_to_file(&cfg, &classes, &layout, &a.list.out)?;
    println!(
        "wrote {} ({} classes; {stats:?})",
        a.list.out.display(),
        classes.len()
    );
    Ok(())
}

/// The sentence encoder named, or the default one wherever it is found.
fn sentence_encoder(model: Option<PathBuf>) -> Result<TextEncoder> {
    let model = match model {
        Some(m) => m,
        None => crossglg_text::default_model().map_err(anyhow::Error::msg)?,
    };
    Ok(TextEncoder::Sentence(Box::new(SentenceEncoder::load(
        &model,
        &Device::Cpu,
    )?)))
}

fn run_compare(a: CompareArgs) -> Result<()> {
    let encoder = match a.model {
        Some(m) => TextEncoder::load(
            &EncoderSpec::from(m),
            TextConfig::default().hashed_dim,
            &Device::Cpu,
        )?,
        None => sentence_encoder(None)?,
    };
    let c = crossglg_train::run::compare_description_files(
        &a.a,
        &a.b,
        &encoder,
        if a.by_id { MatchBy::Id } else { MatchBy::Name },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    let k = c.common.len();
    println!(
        "A: {}\nB: {}\nencoder: {}; {k} classes in both",
        a.a.display(),
        a.b.display(),
        encoder.name()
    );
    for (side, only) in [("A", &c.only_a), ("B", &c.only_b)] {
        if !only.is_empty() {
            println!("only in {side} ({}): {}", only.len(), only.join(", "));
        }
    }
    println!(
        "\n{:<10} {:>6} {:>7} {:>13} {:>13} {:>11} {:>9}",
        "text", "pairs", "rho", "pair cos A", "pair cos B", "same class", "matched"
    );
    for r in &c.rows {
        let rho = r.rho.map_or("-".to_string(), |x| format!("{x:+.3}"));
        println!(
            "{:<10} {:>6} {rho:>7} {:>13.3} {:>13.3} {:>11.3} {:>8.1}%",
            r.text,
            r.pairs,
            r.mean_pair_a,
            r.mean_pair_b,
            r.same_class,
            100.0 * r.matched
        );
    }
    println!(
        "\nrho: Spearman's rank correlation of the two sets' class-pair cosines (do they call the \
         same classes alike?); pair cos: mean cosine between different classes within a set; \
         same class: mean cosine of the two sets' texts of one class; matched: classes whose text \
         is nearest to its own class's text in the other set, both ways (chance {:.1}%).",
        100.0 / k as f64
    );
    if !c.rows.iter().any(|r| r.text == "per-joint") {
        println!("(no per-joint row: the two files describe different joints)");
    }
    // The classes whose two texts differ most first: where one author wrote something else.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&x, &y| c.classes[x].same[0].total_cmp(&c.classes[y].same[0]));
    let shown = if a.classes { k } else { k.min(5) };
    let levels: Vec<&str> = c.rows.iter().map(|r| r.text.as_str()).collect();
    println!(
        "\n{} by same-class cosine ({}), lowest global first; the class whose global text in B \
         is nearest to A's:",
        if a.classes {
            "every class".to_string()
        } else {
            format!("the {shown} classes")
        },
        levels.join(", ")
    );
    for &i in &order[..shown] {
        let r = &c.classes[i];
        let same: Vec<String> = r.same.iter().map(|x| format!("{x:.3}")).collect();
        let nearest = if r.nearest_in_b == r.name {
            "itself".to_string()
        } else {
            format!("`{}`", r.nearest_in_b)
        };
        println!("  {:<32} {}  nearest: {nearest}", r.name, same.join(" "));
    }
    Ok(())
}

fn run_embed(a: EmbedArgs) -> Result<()> {
    let file = DescriptionFile::load(&a.file)?;
    let layout = Layout::load_named_in(&file.layout, &a.file)?;
    let encoder = sentence_encoder(a.model)?;
    let mut opts = EmbedOptions {
        batch: a.batch.max(1),
        progress: true,
        ..Default::default()
    };
    if let Some(f) = a.floor {
        opts.key_joints.floor = f;
    }
    let s = embed_descriptions(&file, &layout, &encoder, &opts, &a.out)?;
    println!(
        "wrote {}: {} classes × {} joints, width {}",
        a.out.display(),
        s.classes,
        s.joints,
        s.dim
    );
    Ok(())
}

fn run_import(a: ImportArgs) -> Result<()> {
    let layout = Layout::load(&a.layout)?;
    let file = match a.source {
        ImportSource::GapNtu120 => import_gap(&a.dir, GapSet::Ntu120, &layout)?,
        ImportSource::GapNwucla => import_gap(&a.dir, GapSet::NwUcla, &layout)?,
        ImportSource::Skeletonagent120 => import_skeletonagent(&a.dir, 120, &layout)?,
        ImportSource::Skeletonagent60 => import_skeletonagent(&a.dir, 60, &layout)?,
    };
    file.save(&a.out)?;
    println!("wrote {} ({} classes)", a.out.display(), file.classes.len());
    Ok(())
}
