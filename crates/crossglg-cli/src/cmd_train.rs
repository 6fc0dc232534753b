//! `demo`, `train`, `eval`, `sweep`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use crossglg_infer::report::EvalReport;
use crossglg_train::config::{CalibrationBase, TrainConfig};
use crossglg_train::run::{self, TrainOptions};

const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");
const DEMO_DESCRIPTIONS: &str =
    include_str!("../../crossglg-train/demo/synthetic-descriptions.json");

#[derive(Args)]
pub struct DemoArgs {
    /// Where the run goes.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Config overrides, e.g. `--set epochs=10 --set model.guidance=none`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Sentence-encoder folder for the descriptions (default: all-MiniLM-L6-v2 wherever
    /// `crossglg text models` finds it, else the hashed bag-of-words encoder).
    #[arg(long)]
    text_encoder: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the results as JSON on stdout (messages go to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Training config (TOML); see configs/.
    #[arg(long, short)]
    config: PathBuf,
    /// Run directory (default: runs/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Config overrides `section.key=value` (TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue from the run directory's last checkpoint.
    #[arg(long)]
    resume: bool,
    /// With --resume: continue although the config differs from the one the run started with.
    #[arg(long, requires = "resume")]
    force: bool,
    #[arg(long)]
    quiet: bool,
    /// Print the results as JSON on stdout (messages go to stderr).
    #[arg(long)]
    json: bool,
    /// Data-parallel training on N GPUs of this machine: starts N ranks, as
    /// `torchrun --standalone --nproc-per-node N` would (a build with --features nccl). On
    /// several machines, start one process per GPU yourself with torchrun's variables
    /// (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); see docs/training.md.
    #[arg(long, value_name = "N")]
    nproc: Option<usize>,
}

/// `--calibration-base` (clap's spelling of `eval.calibration_base`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CalibrationBaseArg {
    All,
    Main,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory (or a checkpoint file inside one).
    run: PathBuf,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also evaluate over N random exemplar draws per novel class (mean, 95 % interval);
    /// default: the run's `eval.draws`.
    #[arg(long, value_name = "N")]
    draws: Option<usize>,
    /// Seed of the exemplar draws (same seed, same exemplars for every run); default: the
    /// run's `eval.draw_seed`.
    #[arg(long, value_name = "SEED")]
    draw_seed: Option<u64>,
    /// Also recognise the novel classes from their descriptions alone (models trained with
    /// the text-target branch).
    #[arg(long)]
    zero_shot: bool,
    /// Mix the novel classes' descriptions into the one-shot decision with this weight
    /// (0..1; models trained with the text-target branch).
    #[arg(long, value_name = "WEIGHT")]
    text_prior: Option<f64>,
    /// Which training classes lend distribution calibration their statistics: `all`, or
    /// `main` (the main dataset's only, without `[[data.extra]]` classes); default: the run's
    /// `eval.calibration_base`.
    #[arg(long, value_enum)]
    calibration_base: Option<CalibrationBaseArg>,
    /// How much the classes' descriptions choose the base classes distribution calibration
    /// borrows from (0..1; 0: the exemplar's nearest, as the paper; 1: the classes described
    /// most alike); default: the run's `eval.calibration_text`.
    #[arg(long, value_name = "WEIGHT")]
    calibration_text: Option<f64>,
    /// Also print the open-set table: each novel class in turn left out of the gallery, at
    /// every operating point of the run's unknown_threshold.json (or --calibration). With
    /// --zero-shot also the table of the answers from descriptions alone (each novel class left
    /// out of the described ones), at thresholds calibrated on the training classes'
    /// descriptions (a measurement: no answer uses them, docs/results.md).
    #[arg(long)]
    open_set: bool,
    /// A threshold calibration file for --open-set (e.g. a validation run's
    /// unknown_threshold.json, calibrated on classes that model never trained on).
    #[arg(long, value_name = "FILE", requires = "open_set")]
    calibration: Option<PathBuf>,
    /// Validation runs only: calibrate the unknown thresholds on the pseudo-novel classes and
    /// rewrite unknown_threshold.json (training does this for validation runs).
    #[arg(long)]
    recalibrate_unknown: bool,
    /// Write the new evaluation into the run's report.json / report.md (what `compare` reads).
    #[arg(long)]
    write: bool,
    /// Also print how far the descriptions' class similarities (global, per joint) agree with
    /// the classes' mean embeddings: Spearman's ρ over training, novel × training and novel
    /// pairs. Works for runs trained without text too, when their config names descriptions.
    #[arg(long)]
    text_agreement: bool,
    /// The main dataset's class descriptions from this file instead of the run's own, for
    /// everything that reads them (--text-agreement, --calibration-text, --zero-shot,
    /// --text-prior); embedded with the run's text encoder.
    #[arg(long, value_name = "FILE")]
    descriptions: Option<PathBuf>,
    /// --text-agreement's class means from at most this many samples a class (a fixed draw);
    /// 0 embeds them all.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 200,
        requires = "text_agreement"
    )]
    agreement_samples: usize,
    /// --text-agreement over the main dataset's classes only, leaving out the training classes
    /// of `[[data.extra]]` datasets (docs/evaluation.md).
    #[arg(long, requires = "text_agreement")]
    agreement_main_only: bool,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Run directories of the reference group (e.g. guidance none, one per seed).
    #[arg(long, num_args = 1.., required = true, value_name = "RUN")]
    a: Vec<PathBuf>,
    /// Run directories of the group under test (same seeds and folds).
    #[arg(long, num_args = 1.., required = true, value_name = "RUN")]
    b: Vec<PathBuf>,
    /// Names of the two groups in the table.
    #[arg(long, value_delimiter = ',', default_value = "a,b")]
    names: Vec<String>,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SweepArgs {
    #[arg(long, short)]
    config: PathBuf,
    /// Auxiliary-class counts (default: the split's own sweep).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Seeds per size.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    #[arg(long, default_value = "runs/sweep")]
    out: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    #[arg(long)]
    quiet: bool,
    /// Print the results as JSON on stdout (messages go to stderr).
    #[arg(long)]
    json: bool,
    /// Print one `crossglg train` command per run and stop (to run them anywhere).
    #[arg(long)]
    plan: bool,
    /// Write a Slurm job array (one task and one GPU per run) to this file, with the commands
    /// beside it (`<file>.commands`), and stop; summarise afterwards with --collect.
    #[arg(long, value_name = "FILE")]
    slurm: Option<PathBuf>,
    /// Run the runs as processes, one per listed GPU at a time (CUDA_VISIBLE_DEVICES=<gpu>,
    /// device cuda:0), e.g. `--gpus 0,1,2,3`.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    gpus: Vec<String>,
    /// Run the runs as this many processes at a time (device as configured).
    #[arg(long, value_name = "N")]
    processes: Option<usize>,
    /// Train nothing: summarise the runs already in --out (e.g. after the Slurm array).
    #[arg(long)]
    collect: bool,
}

fn print_reports(reports: &[EvalReport]) {
    for r in reports {
        println!("{}", r.to_markdown());
    }
}

fn default_text_encoder() -> String {
    match crossglg_text::default_model() {
        Ok(dir) => dir.display().to_string(),
        Err(_) => "hashed".into(),
    }
}

pub fn demo(a: DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let desc = a.out.join("synthetic-descriptions.json");
    crossglg_data::atomic::write_atomic(&desc, DEMO_DESCRIPTIONS.as_bytes())
        .with_context(|| format!("writing {}", desc.display()))?;
    let mut table: toml::Table = toml::from_str(DEMO_CONFIG).expect("built-in config parses");
    let encoder = a.text_encoder.unwrap_or_else(default_text_encoder);
    let mut overrides = vec![
        format!("text.descriptions={:?}", desc.display().to_string()),
        format!("text.encoder={encoder:?}"),
    ];
    overrides.extend(a.overrides);
    crossglg_train::config::apply_overrides(&mut table, &overrides, "demo")?;
    let cfg = TrainConfig::from_toml_str(&toml::to_string(&table)?, "built-in demo config")?;
    let synth = cfg
        .data
        .synthetic()
        .context("the demo config's data source must stay synthetic")?;
    let intro = format!(
        "crossglg demo: {} synthetic motions on {}, encoder {:?}, guidance {:?}, text encoder {}",
        crossglg_data::synth::class_names(synth)?.len(),
        synth.layout,
        cfg.model.encoder.kind,
        cfg.model.guidance,
        encoder
    );
    if a.json {
        eprintln!("{intro}");
    } else {
        println!("{intro}");
    }
    run_and_report(&cfg, &a.out, (false, false), a.quiet, a.json)?;
    if !a.json {
        let (run, d) = (a.out.display(), desc.display());
        println!(
            "\nnext (docs/inference.md):\n  \
             crossglg data synth --out samples --classes wave,kick,squat\n  \
             crossglg enroll --model {run} --gallery my.gallery --name wave samples/synth_a01_s01_v01_r01.npy\n  \
             crossglg recognize --model {run} --gallery my.gallery samples/*.npy\n  \
             crossglg recognize --model {run} --describe {d} --classes wave,kick,squat samples/*.npy\n  \
             crossglg serve --model {run} --gallery my.gallery --describe {d}"
        );
    }
    Ok(())
}

fn run_and_report(
    cfg: &TrainConfig,
    out: &Path,
    (resume, force): (bool, bool),
    quiet: bool,
    json: bool,
) -> Result<()> {
    let mut opts = TrainOptions {
        resume,
        force,
        progress: !quiet,
        ..TrainOptions::default()
    };
    if let Some(launch) = crossglg_train::dist::Launch::from_env()? {
        if !cfg.device.starts_with("cuda") {
            bail!(
                "data-parallel training (WORLD_SIZE={}) runs on GPUs: set device = \"cuda\" (each rank takes cuda:LOCAL_RANK)",
                launch.world
            );
        }
        let device = run::device_from(&format!("cuda:{}", launch.local_rank))?;
        opts.collective = Some(crossglg_train::dist::join(&launch, &device)?);
        opts.device = Some(device);
        opts.progress &= launch.rank == 0;
        if launch.rank != 0 {
            // rank 0 reports; the others say only that they finished
            let s = run::train(cfg, out, &opts)?;
            eprintln!(
                "rank {} of {}: {} steps, weights {}",
                launch.rank, launch.world, s.steps, s.weights_hash
            );
            return Ok(());
        }
    }
    let s = run::train(cfg, out, &opts)?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["run_dir"] = out.display().to_string().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "trained {} epochs ({} steps, {} parameters) in {:.1} s, {:.0} samples/s; final loss {:.4}, train accuracy {:.1}%",
        s.epochs,
        s.steps,
        s.parameters,
        s.seconds,
        s.samples_per_second,
        s.final_loss,
        100.0 * s.train_accuracy
    );
    print_reports(&s.reports);
    println!("run directory: {}", out.display());
    Ok(())
}

pub fn train(a: TrainArgs) -> Result<()> {
    let cfg = TrainConfig::load(&a.config, &a.overrides)?;
    if let Some(n) = a.nproc {
        if std::env::var_os("WORLD_SIZE").is_some() {
            bail!("--nproc starts the ranks itself; WORLD_SIZE is already set (a rank was started with --nproc)");
        }
        return launch_local(n);
    }
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(a.config.file_stem().unwrap_or_default()));
    run_and_report(&cfg, &out, (a.resume, a.force), a.quiet, a.json)
}

/// Starts `n` ranks of this same command on this machine (torchrun's variables, rank 0 at a
/// free local port), waits for them, and stops them all when one fails.
fn launch_local(n: usize) -> Result<()> {
    if n == 0 {
        bail!("--nproc 0: at least one rank is needed");
    }
    let exe = std::env::current_exe().context("cannot find this program to start its ranks")?;
    // the same arguments without --nproc
    let mut args = Vec::new();
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        if a == "--nproc" {
            it.next();
        } else if !a.to_string_lossy().starts_with("--nproc=") {
            args.push(a);
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free local port for the ranks' rendezvous")?
        .port();
    let mut children = Vec::new();
    for rank in 0..n {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(&args)
            .env("WORLD_SIZE", n.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
        if rank != 0 {
            cmd.stdout(std::process::Stdio::null());
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start rank {rank}"))?;
        children.push(child);
    }
    let mut done = vec![false; n];
    loop {
        for (rank, c) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            if let Some(status) = c.try_wait()? {
                done[rank] = true;
                if !status.success() {
                    for (r, other) in children.iter_mut().enumerate() {
                        if r != rank {
                            let _ = other.kill();
                            let _ = other.wait();
                        }
                    }
                    bail!("rank {rank} of {n} failed ({status}); the other ranks were stopped");
                }
                break;
            }
        }
        if done.iter().all(|&d| d) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn print_open_set(
    title: &str,
    cal: &crossglg_infer::gallery::ThresholdCalibration,
    rows: &[crossglg_infer::eval::OpenSetRow],
    known: &str,
) {
    println!(
        "# {title}\n\nthresholds calibrated on: {}\n\n| false-accept target | threshold | {known}: correct and accepted % | left out: rejected % |\n|---|---:|---:|---:|",
        if cal.calibrated_on.is_empty() { "base (training) classes" } else { &cal.calibrated_on }
    );
    for r in rows {
        println!(
            "| {} | {:.3} | {:.1} ({}) | {:.1} ({}) |",
            r.target_false_accept_rate,
            r.threshold,
            100.0 * r.known_correct_accepted,
            r.known_queries,
            100.0 * r.unknown_rejected,
            r.unknown_queries
        );
    }
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let device = run::device_from(&a.device)?;
    if a.recalibrate_unknown {
        let c = run::recalibrate_unknown(&a.run, &device)?;
        eprintln!(
            "unknown threshold {:.3} at false-accept target {} ({})",
            c.threshold, c.target_false_accept_rate, c.calibrated_on
        );
    }
    let reports = run::evaluate_run_with(
        &a.run,
        &device,
        &run::EvalOverrides {
            draws: a.draws,
            draw_seed: a.draw_seed,
            zero_shot: a.zero_shot.then_some(true),
            text_prior: a.text_prior,
            calibration_base: a.calibration_base.map(|b| match b {
                CalibrationBaseArg::All => CalibrationBase::All,
                CalibrationBaseArg::Main => CalibrationBase::Main,
            }),
            calibration_text: a.calibration_text,
            descriptions: a.descriptions.clone(),
        },
    )?;
    if a.write {
        let dir = if a.run.is_dir() {
            a.run.clone()
        } else {
            a.run.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        run::write_reports(&dir, &reports)?;
    }
    let open = if a.open_set {
        Some(run::open_set_table(
            &a.run,
            &device,
            a.calibration.as_deref(),
        )?)
    } else {
        None
    };
    let open_zero_shot = if a.open_set && a.zero_shot {
        Some(run::zero_shot_open_set_table(
            &a.run,
            &device,
            a.descriptions.as_deref(),
        )?)
    } else {
        None
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        if let Some((cal, rows)) = &open {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"calibration": cal, "open_set": rows})
                )?
            );
        }
        if let Some((cal, rows)) = &open_zero_shot {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"calibration": cal, "open_set_zero_shot": rows})
                )?
            );
        }
    } else {
        print_reports(&reports);
        if let Some((cal, rows)) = &open {
            print_open_set(
                "Open set (each novel class in turn left out of the gallery)",
                cal,
                rows,
                "enrolled",
            );
        }
        if let Some((cal, rows)) = &open_zero_shot {
            print_open_set(
                "Open set, zero-shot (each novel class in turn left out of the described ones)",
                cal,
                rows,
                "described",
            );
        }
    }
    if a.text_agreement {
        let mut loaded = run::load_run(&a.run, &device)?;
        if let Some(d) = &a.descriptions {
            loaded.cfg.text.descriptions = Some(d.clone());
            loaded.cfg.text.bank = None;
        }
        let opts = run::AgreementOptions {
            per_class: Some(a.agreement_samples).filter(|&n| n > 0),
            main_only: a.agreement_main_only,
        };
        let rows = run::text_agreement(&loaded, &opts)?;
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "text_agreement": rows }))?
            );
        } else {
            println!("# Do the descriptions' similarities agree with the skeletons'?\n\nSpearman's ρ between class-pair cosines of the texts and of the mean embeddings.\n\n| text | class pairs | pairs | ρ |\n|---|---|---:|---:|");
            for r in &rows {
                let rho = r.rho.map_or("–".to_string(), |v| format!("{v:+.3}"));
                println!("| {} | {} | {} | {rho} |", r.text, r.pairs, r.count);
            }
        }
    }
    Ok(())
}

pub fn compare(a: CompareArgs) -> Result<()> {
    use crossglg_train::compare;
    let read = |dirs: &[PathBuf]| -> Result<Vec<compare::RunResult>> {
        dirs.iter()
            .map(|d| compare::read_run(d).map_err(Into::into))
            .collect()
    };
    let c = compare::compare(&read(&a.a)?, &read(&a.b)?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        let name = |i: usize, d: &str| a.names.get(i).cloned().unwrap_or_else(|| d.into());
        print!("{}", c.to_markdown(&name(0, "a"), &name(1, "b")));
        print!("{}", c.summary_markdown(&name(0, "a"), &name(1, "b")));
    }
    Ok(())
}

pub fn sweep(a: SweepArgs) -> Result<()> {
    use crossglg_train::sweep::{self as sw, Slots};
    let base = TrainConfig::load(&a.config, &a.overrides)?;
    let sizes = if a.sizes.is_empty() {
        run::resolve_split(&base)?.sweep
    } else {
        a.sizes.clone()
    };
    if sizes.is_empty() {
        bail!("the split has no default sweep; pass --sizes");
    }
    let runs = sw::plan(&sizes, &a.seeds, &a.out);
    let exe = std::env::current_exe().context("finding the crossglg executable")?;
    let device = (!a.gpus.is_empty()).then_some("cuda:0");
    let args: Vec<Vec<String>> = runs
        .iter()
        .map(|r| sw::train_args(&a.config, &a.overrides, r, device))
        .collect();
    if a.plan || a.slurm.is_some() {
        let lines = sw::command_lines(&exe.display().to_string(), &args);
        match &a.slurm {
            Some(script) => {
                let commands = script.with_extension("commands");
                let name = script
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "sweep".into());
                crossglg_data::atomic::write_atomic(
                    &commands,
                    (lines.join("\n") + "\n").as_bytes(),
                )
                .with_context(|| format!("writing {}", commands.display()))?;
                let text = sw::slurm_script(&commands, lines.len(), &name);
                crossglg_data::atomic::write_atomic(script, text.as_bytes())
                    .with_context(|| format!("writing {}", script.display()))?;
                println!(
                    "wrote {} ({} array tasks) and {}; then: crossglg sweep … --collect",
                    script.display(),
                    lines.len(),
                    commands.display()
                );
            }
            None => lines.iter().for_each(|l| println!("{l}")),
        }
        return Ok(());
    }
    if !a.collect {
        let slots = match (a.gpus.is_empty(), a.processes) {
            (false, _) => Some(Slots::Gpus(a.gpus.clone())),
            (true, Some(n)) if n > 1 => Some(Slots::Processes(n)),
            _ => None,
        };
        match slots {
            Some(slots) => {
                eprintln!("running {} runs as processes ({slots:?})", runs.len());
                let outcomes = sw::run_pool(&exe, &runs, &args, &slots)
                    .context("running the sweep's processes")?;
                let failed: Vec<String> = outcomes
                    .iter()
                    .filter(|o| !o.ok)
                    .map(|o| o.log.display().to_string())
                    .collect();
                if !failed.is_empty() {
                    bail!(
                        "{} of {} runs failed; their logs: {}",
                        failed.len(),
                        outcomes.len(),
                        failed.join(", ")
                    );
                }
            }
            None => {
                for r in &runs {
                    let mut cfg = base.clone();
                    cfg.data.auxiliary = Some(r.auxiliary);
                    cfg.seed = r.seed;
                    let opts = TrainOptions {
                        progress: !a.quiet,
                        ..TrainOptions::default()
                    };
                    run::train(&cfg, &r.dir, &opts)?;
                }
            }
        }
    }
    // rows[size] = per seed, (method, accuracy) — read back from the run folders, so runs made
    // by other processes or machines are summarised the same way
    type PerSeed = Vec<(String, f64)>;
    let mut rows: Vec<(usize, Vec<PerSeed>)> = Vec::new();
    for &k in &sizes {
        let mut accs = Vec::new();
        for r in runs.iter().filter(|r| r.auxiliary == k) {
            let res = crossglg_train::compare::read_run(&r.dir)?;
            accs.push(
                res.reports
                    .iter()
                    .map(|r| (r.method.clone(), r.accuracy))
                    .collect::<Vec<_>>(),
            );
        }
        rows.push((k, accs));
    }
    let methods: Vec<String> = rows
        .first()
        .and_then(|(_, a)| a.first())
        .map(|m| m.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    if a.json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, accs)| {
                let per_method: serde_json::Map<String, serde_json::Value> = methods
                    .iter()
                    .enumerate()
                    .map(|(m, name)| {
                        let v: Vec<f64> = accs.iter().map(|a| a[m].1).collect();
                        (name.clone(), serde_json::json!(v))
                    })
                    .collect();
                serde_json::json!({ "auxiliary_classes": k, "accuracy_per_seed": per_method })
            })
            .collect();
        let out = serde_json::json!({ "seeds": a.seeds, "rows": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("| auxiliary classes | {} |", methods.join(" | "));
    println!("|---|{}", "---|".repeat(methods.len()));
    for (k, accs) in &rows {
        let cells: Vec<String> = (0..methods.len())
            .map(|m| {
                let v: Vec<f64> = accs.iter().map(|a| 100.0 * a[m].1).collect();
                let (mean, std) = crossglg_infer::stats::mean_std(&v);
                format!("{mean:.1} ± {std:.1}")
            })
            .collect();
        println!("| {k} | {} |", cells.join(" | "));
    }
    println!("(top-1 %, mean ± std over seeds {:?})", a.seeds);
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    /// A run directory, a checkpoint file, or an earlier export.
    run: PathBuf,
    /// The folder to write (made atomically: it appears whole or not at all).
    #[arg(long)]
    out: PathBuf,
    /// Also write `pytorch_model.safetensors` under the names of the PyTorch twins in
    /// `bench/torch_reference.py` (check it with `bench/check_export.py OUT`).
    #[arg(long)]
    torch: bool,
    /// Replace OUT if it is an earlier export.
    #[arg(long)]
    force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let s = crossglg_train::export::export(
        &a.run,
        &a.out,
        &crossglg_train::export::ExportOptions {
            torch: a.torch,
            force: a.force,
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "exported {} weights ({} parameters) to {}",
        s.tensors,
        s.parameters,
        s.dir.display()
    );
    for f in &s.files {
        println!("  {f}");
    }
    if !s.torch_left_out.is_empty() {
        println!(
            "left out of pytorch_model.safetensors (no PyTorch twin): {} weights of the \
             text-target branch",
            s.torch_left_out.len()
        );
    }
    Ok(())
}
