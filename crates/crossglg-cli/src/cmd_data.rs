//! `crossglg data …`: layouts, convert, inspect, split, synth.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use crossglg_data::inspect::{inspect_dataset, inspect_path, InspectOptions};
use crossglg_data::pack::{self, Packed};
use crossglg_data::protocol::{read_name_list, Split};
use crossglg_data::read::{self, DirOptions, ReadReport};
use crossglg_data::{Dataset, Layout};

#[derive(Subcommand)]
pub enum DataCommand {
    /// List the built-in skeleton layouts, or print one as TOML (a template for your own).
    Layouts { name: Option<String> },
    /// Read a raw dataset and write it as one packed file.
    Convert(ConvertArgs),
    /// Frames, bodies, joints, value ranges, NaNs and per-class counts of a file, folder or
    /// packed dataset.
    Inspect(InspectArgs),
    /// Print a one-shot protocol: novel classes, exemplars, auxiliary classes.
    Split(SplitArgs),
    /// Write synthetic motions (the demo's generator) as a `.npy` folder with `manifest.csv`:
    /// files to try `enroll`, `recognize` and `stream` on, or a template for your own data.
    Synth(SynthArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// NTU RGB+D 60/120 `.skeleton` folder.
    Ntu,
    /// NW-UCLA `all_sqe` json folder.
    Nwucla,
    /// MSR Action3D real-world skeleton txt folder.
    Msr,
    /// A folder of `.npy` files with `manifest.csv` (needs --layout).
    Npy,
    /// A pyskl annotation pickle (needs --layout).
    Pyskl,
    /// A folder of OpenPose per-frame JSON (`NAME_<frame>_keypoints.json`); layout body25 or
    /// openpose18 by the keypoint count unless --layout says otherwise.
    Openpose,
    /// A folder of Kinetics-skeleton videos (ST-GCN's per-video JSON); layout openpose18.
    Kinetics,
    /// An `.npz` archive: CTR-GCN's x_train/y_train/x_test/y_test (layout ntu25 unless given)
    /// or one [T, V, C] / [M, T, V, C] array per sequence.
    Npz,
    /// A folder of MMPose video predictions (MMPoseInferencer's pred_out_dir JSON); layout
    /// coco17 (2-D) or h36m17 (3-D) by the keypoints unless --layout says otherwise.
    Mmpose,
}

#[derive(Args)]
pub struct ConvertArgs {
    #[arg(long, value_enum)]
    format: Format,
    /// The raw dataset folder (or pickle file).
    input: PathBuf,
    /// The packed file to write (`.safetensors`).
    #[arg(long, short)]
    out: PathBuf,
    /// Layout name or TOML file (npy and pyskl).
    #[arg(long)]
    layout: Option<String>,
    /// Sample names to leave out, one per line (e.g. NTU's missing-skeleton list).
    #[arg(long)]
    exclude: Option<PathBuf>,
    /// Stop at the first unreadable file instead of skipping (and listing) it.
    #[arg(long)]
    strict: bool,
    /// Persons kept per sample.
    #[arg(long, default_value_t = 2)]
    max_bodies: usize,
    /// The most the dataset may hold in memory, GiB of f32 (default 4; reading stops with an
    /// error beyond).
    #[arg(long)]
    max_gib: Option<f64>,
    /// Let a `.npy` folder's manifest name files outside that folder (refused by default).
    #[arg(long)]
    allow_outside_paths: bool,
    /// Class names, one per line, in label order (pyskl pickles: label i is line i+1).
    /// Default for NTU pickles: the official NTU RGB+D 120 names; else the label numbers.
    #[arg(long)]
    classes: Option<PathBuf>,
}

#[derive(Args)]
pub struct InspectArgs {
    path: PathBuf,
    /// Layout for npy folders and pickles (default: guessed from the joint count).
    #[arg(long)]
    layout: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SplitArgs {
    /// Built-in name (ntu120, ntu60, nwucla, msr, …) or a split TOML file.
    name: String,
    /// Class names to print beside the labels: a packed dataset file.
    #[arg(long)]
    classes_from: Option<PathBuf>,
    /// Show the split at this auxiliary-class count.
    #[arg(long)]
    auxiliary: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder (created).
    #[arg(long, short)]
    out: PathBuf,
    /// Layout name or TOML file.
    #[arg(long, default_value = "ntu25")]
    layout: String,
    /// Motions (default: all 17; `crossglg data synth --list` names them).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    #[arg(long, default_value_t = 4)]
    samples_per_class: usize,
    /// Seed of the generator; the demo's data uses seed 0.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the motion names and stop.
    #[arg(long)]
    list: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Layouts { name } => layouts(name),
        DataCommand::Convert(a) => convert(a),
        DataCommand::Inspect(a) => inspect(a),
        DataCommand::Split(a) => split(a),
        DataCommand::Synth(a) => synth(a),
    }
}

fn synth(a: SynthArgs) -> Result<()> {
    use crossglg_data::synth::{generate, SynthConfig, MOTIONS};
    if a.list {
        for m in MOTIONS {
            println!("{:<12} {}", m.name, m.description);
        }
        return Ok(());
    }
    let ds = generate(&SynthConfig {
        layout: a.layout,
        classes: a.classes,
        samples_per_class: a.samples_per_class,
        seed: a.seed,
        ..SynthConfig::default()
    })?;
    read::npy::write_npy_folder(&ds, &a.out)?;
    println!(
        "wrote {} samples of {} motions ({} layout) to {}",
        ds.samples.len(),
        ds.classes.len(),
        ds.layout,
        a.out.display()
    );
    Ok(())
}

fn layouts(name: Option<String>) -> Result<()> {
    match name {
        Some(n) => print!("{}", Layout::load(&n)?.to_toml()),
        None => {
            for n in crossglg_data::layout::builtin_names() {
                let l = Layout::builtin(n)?;
                println!("{n:<12} {:>3} joints  {}", l.num_joints(), l.description);
            }
        }
    }
    Ok(())
}

fn print_read_report(r: &ReadReport) {
    eprintln!("read {} of {} files", r.read, r.files);
    for s in &r.skipped {
        eprintln!("  skipped {}: {}", s.path.display(), s.reason);
    }
    for f in &r.flagged {
        eprintln!(
            "  flagged {}: {:?}{}",
            f.path.display(),
            f.quality,
            if f.kept { " (kept)" } else { " (left out)" }
        );
    }
}

/// Reads a raw dataset of `format` (used by `convert`).
pub fn read_dataset(
    format: Format,
    input: &Path,
    layout: Option<&str>,
    classes: Option<Vec<String>>,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport)> {
    let need_layout =
        || layout.context("this format needs --layout (e.g. ntu25, coco17, or a TOML file)");
    Ok(match format {
        Format::Ntu => read::ntu::read_ntu_dir(input, opts)?,
        Format::Nwucla => read::ucla::read_ucla_dir(input, opts)?,
        Format::Msr => read::msr::read_msr_dir(input, opts)?,
        Format::Npy => read::npy::read_npy_dir(input, need_layout()?, opts)?,
        Format::Pyskl => {
            let d = read::pyskl::read_pyskl(input, need_layout()?, classes, opts)?;
            (d.dataset, d.report)
        }
        Format::Openpose => {
            let name = match layout {
                Some(l) => l.to_string(),
                None => read::openpose::guess_layout(input)?,
            };
            read::openpose::read_openpose_dir(input, &Layout::load(&name)?, opts)?
        }
        Format::Kinetics => {
            let l = Layout::load(layout.unwrap_or("openpose18"))?;
            read::kinetics::read_kinetics_dir(input, &l, opts)?
        }
        Format::Npz => read::npz::read_npz(input, layout, opts)?,
        Format::Mmpose => {
            let name = match layout {
                Some(l) => l.to_string(),
                None => {
                    let files = read::list_files(input, ".json")?;
                    let first = files
                        .first()
                        .ok_or_else(|| anyhow::anyhow!("{} has no .json files", input.display()))?;
                    read::mmpose::guess_layout(first)?
                }
            };
            read::mmpose::read_mmpose_dir(input, &Layout::load(&name)?, opts)?
        }
    })
}

fn convert(a: ConvertArgs) -> Result<()> {
    let mut opts = DirOptions {
        strict: a.strict,
        max_bodies: a.max_bodies,
        allow_outside_paths: a.allow_outside_paths,
        ..Default::default()
    };
    if let Some(g) = a.max_gib {
        if !(g.is_finite() && g > 0.0) {
            bail!("--max-gib must be a positive number, got {g}");
        }
        opts.max_total_values = (g * (1u64 << 30) as f64 / 4.0) as usize;
    }
    if let Some(p) = &a.exclude {
        opts.exclude = read_name_list(p)?.into_iter().collect();
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("reading {}", a.input.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let classes = match &a.classes {
        Some(p) if !matches!(a.format, Format::Pyskl) => {
            bail!(
                "--classes {}: only pyskl pickles take class names",
                p.display()
            )
        }
        Some(p) => Some(read::read_class_names(p)?),
        None => None,
    };
    let (dataset, report) = read_dataset(a.format, &a.input, a.layout.as_deref(), classes, &opts)?;
    spinner.finish_and_clear();
    print_read_report(&report);
    if dataset.samples.is_empty() {
        bail!("no samples read from {}", a.input.display());
    }
    // The layout travels by value: a layout file given here is what the packed file carries,
    // whatever its `name` (looking the name up again would fail for anything not built in).
    let layout = a.layout.as_deref().map(Layout::load).transpose()?;
    let summary = pack::convert(&dataset, layout.as_ref(), &a.out, true)?;
    println!(
        "wrote {}: {} samples, {} frames, {:.1} MB",
        a.out.display(),
        summary.samples,
        summary.rows,
        summary.bytes as f64 / 1e6
    );
    Ok(())
}

fn is_packed(path: &Path) -> bool {
    path.is_file() && Packed::open(path).is_ok()
}

fn inspect(a: InspectArgs) -> Result<()> {
    let report = if is_packed(&a.path) {
        let ds = Packed::open(&a.path)?.to_dataset()?;
        inspect_dataset(&ds, &a.path.display().to_string(), "packed")
    } else {
        let opts = InspectOptions {
            layout: a.layout,
            ..Default::default()
        };
        inspect_path(&a.path, &opts)?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn split(a: SplitArgs) -> Result<()> {
    let mut split = Split::load(&a.name)?;
    if let Some(k) = a.auxiliary {
        split = split.with_auxiliary(k)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&split)?);
        return Ok(());
    }
    let classes = match &a.classes_from {
        Some(p) => Some(Packed::open(p)?.classes().to_vec()),
        None => builtin_class_names(&split.name),
    };
    print!("{}", split.table(classes.as_deref()));
    Ok(())
}

/// Class names for the built-in splits, so `data split` reads well without data at hand.
fn builtin_class_names(split: &str) -> Option<Vec<String>> {
    let base = split.split('@').next().unwrap_or(split);
    let file = match base {
        s if s.starts_with("ntu") => crossglg_text_descriptions::NTU120,
        "nwucla" => crossglg_text_descriptions::NWUCLA,
        "msr" => crossglg_text_descriptions::MSR,
        _ => return None,
    };
    let d: serde_json::Value = serde_json::from_str(file).ok()?;
    let mut names: Vec<(u64, String)> = d["classes"]
        .as_array()?
        .iter()
        .filter_map(|c| Some((c["id"].as_u64()?, c["name"].as_str()?.to_string())))
        .collect();
    names.sort();
    Some(names.into_iter().map(|(_, n)| n).collect())
}

/// The shipped description files double as the class lists of the standard datasets.
mod crossglg_text_descriptions {
    pub const NTU120: &str = include_str!("../../crossglg-text/descriptions/ntu120.json");
    pub const NWUCLA: &str = include_str!("../../crossglg-text/descriptions/nw-ucla.json");
    pub const MSR: &str = include_str!("../../crossglg-text/descriptions/msr-action3d.json");
}
