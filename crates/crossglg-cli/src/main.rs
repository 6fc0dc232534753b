//! `crossglg`: one binary for data, text, training, evaluation and inference.
//!
//! Flags are parsed into plain structs here and handed to library functions; the libraries
//! never print (the binary does) and report errors that name the file at fault.

mod cmd_data;
mod cmd_text;
mod cmd_train;
mod cmd_use;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "crossglg",
    version,
    about = "One-shot skeleton action recognition guided by LLM text (CrossGLG, ECCV 2024)"
)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a small CrossGLG on built-in synthetic motions and evaluate it one-shot.
    Demo(cmd_train::DemoArgs),
    /// Skeleton data: layouts, convert, inspect, one-shot splits.
    #[command(subcommand)]
    Data(cmd_data::DataCommand),
    /// Text knowledge: LLM descriptions, validation, key joints, embeddings.
    #[command(subcommand)]
    Text(cmd_text::TextCommand),
    /// Train CrossGLG from a TOML config.
    Train(cmd_train::TrainArgs),
    /// One-shot evaluation of a trained run.
    Eval(cmd_train::EvalArgs),
    /// Paired comparison of two groups of runs (matched by seed and fold): per-seed
    /// differences, their mean with a 95 % interval, and how many are positive.
    Compare(cmd_train::CompareArgs),
    /// Train and evaluate over the auxiliary-class sweep and print the paper-style table.
    Sweep(cmd_train::SweepArgs),
    /// Embeddings of skeleton sequences from a trained model (JSON or npy).
    Embed(cmd_use::EmbedArgs),
    /// Add exemplars of a (new) action to a gallery, from as little as one example.
    Enroll(cmd_use::EnrollArgs),
    /// Recognise sequences against a gallery: class, similarity, margin, or unknown.
    Recognize(cmd_use::RecognizeArgs),
    /// Recognise actions in a pose stream on stdin (JSON lines or CSV), one event per window.
    Stream(cmd_use::StreamArgs),
    /// Write a trained model as a folder: weights only, config.json, layout, model card, a
    /// golden input and outputs; `--torch` adds the weights under the PyTorch twins' names.
    Export(cmd_train::ExportArgs),
    /// Serve a model and a gallery over HTTP: JSON API, WebSocket stream, metrics, web page.
    Serve(cmd_use::ServeArgs),
    /// Time training steps and inference of the encoders (and a PyTorch reference, see bench/run.sh).
    Bench(BenchArgs),
    /// Pictures: training curves, confusion matrix, joint importance, embedding map.
    #[command(subcommand)]
    Plot(cmd_use::PlotCommand),
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    persons: usize,
    #[arg(long, default_value_t = 64)]
    frames: usize,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Variants (default: the reference ST-GCN, plain and fused); also model-stgcn,
    /// model-ctrgcn, model-infogcn, crossglg-infogcn.
    #[arg(long, value_delimiter = ',')]
    variant: Vec<String>,
    /// PyTorch results from `bench/torch_reference.py --json`, for ratio columns.
    #[arg(long)]
    torch_json: Option<std::path::PathBuf>,
    /// The model variants' implementation: `fused` (the CPU kernels, the default), `plain`
    /// (candle's operations only, the reference the kernels are tested against) or `portable`
    /// (the candle forms a GPU runs, plus batch norm from row sums; see docs/performance.md).
    #[arg(long, default_value = "fused")]
    kernels: crossglg_model::layers::Kernels,
    /// Where the model variants run: cpu, cuda or cuda:N (a build with --features cuda); the
    /// PyTorch side takes the same name (`bench/torch_reference.py --device`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run every variant in this process rather than one child process each (for profilers
    /// that follow one process, such as ncu; peak memory is then the whole run's).
    #[arg(long)]
    in_process: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Instead of running anything: summarise the rounds that `ROUNDS=N bench/run.sh` wrote
    /// to DIR (median per-round Rust / PyTorch ratio and its range, per variant).
    #[arg(long, value_name = "DIR")]
    summary: Option<std::path::PathBuf>,
    /// Instead of the training/inference variants: the per-window latency of `crossglg stream`
    /// with this trained run (batch 1), against batched embedding of the same windows.
    #[arg(long, value_name = "RUN")]
    stream: Option<std::path::PathBuf>,
    /// Frames per stream window (with --stream).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Frames between stream windows (with --stream).
    #[arg(long, default_value_t = 16)]
    hop: usize,
    /// Stream windows to time (with --stream).
    #[arg(long, default_value_t = 50)]
    windows: usize,
    /// Instead of the variants: a load test of a running `crossglg serve` at this URL
    /// (`http://127.0.0.1:8080`; a token from CROSSGLG_SERVE_TOKEN).
    #[arg(long, value_name = "URL")]
    load: Option<String>,
    /// Concurrent clients (with --load).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Duration in seconds (with --load).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Every n-th request of a client enrolls a class of its own (with --load; 0: never).
    #[arg(long, default_value_t = 10)]
    enroll_every: usize,
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(run) = &a.stream {
        // Threads: as for every command (RAYON_NUM_THREADS / CANDLE_NUM_THREADS); --threads
        // only applies to the variant children.
        return cmd_use::bench_stream(run, a.window, a.hop, a.windows);
    }
    if let Some(url) = &a.load {
        let r = crossglg_bench::load::run_load(&crossglg_bench::load::LoadConfig {
            url: url.clone(),
            clients: a.clients,
            seconds: a.seconds,
            enroll_every: a.enroll_every,
            frames: a.frames,
            token: std::env::var("CROSSGLG_SERVE_TOKEN").ok(),
        })?;
        print!("{}", r.table());
        for e in &r.error_samples {
            eprintln!("error: {e}");
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        if r.lost_enrolls > 0 || r.recognize.errors + r.enroll.errors > 0 {
            anyhow::bail!(
                "{} errors and {} lost enrolls under load",
                r.recognize.errors + r.enroll.errors,
                r.lost_enrolls
            );
        }
        return Ok(());
    }
    if let Some(dir) = &a.summary {
        let s = crossglg_bench::rounds::summarize(dir)?;
        print!("{}", s.table());
        if a.json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        return Ok(());
    }
    let cfg = crossglg_bench::BenchConfig {
        batch: a.batch,
        persons: a.persons,
        frames: a.frames,
        iters: a.iters,
        warmup: a.warmup,
        threads: a.threads,
        variants: a.variant,
        torch_json: a.torch_json,
        kernels: a.kernels,
        device: a.device.clone(),
        isolate: !a.in_process,
        ..Default::default()
    };
    // `run` prints the table as it goes.
    let report = crossglg_bench::run(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// `crossglg eval --json | head` closes the pipe early; Rust ignores SIGPIPE, so the next
/// `println!` panicked with a backtrace. Like other command-line tools, end quietly instead:
/// restore the default action. Not for the commands that talk over sockets (`serve` and
/// `bench --load` over HTTP, `train`/`sweep` with NCCL's rendezvous), where a peer hanging up
/// must be an error on that connection, not the end of the process.
fn die_quietly_on_closed_stdout() {
    #[cfg(unix)]
    #[allow(unsafe_code)]
    // SAFETY: `signal` only sets how the process takes SIGPIPE; no handler of ours is
    // installed, so nothing runs in signal context.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> std::process::ExitCode {
    // `bench` measures each variant in a child process of this same binary.
    if let Some(code) = crossglg_bench::child_main_if_requested() {
        return code;
    }
    // Keep freed memory in the process: candle allocates and frees large temporaries every
    // step, and returning them to the kernel each time costs more than the maths (see
    // docs/performance.md).
    crossglg_kernels::tune_allocator();
    // Subnormal floats take x86's slow path in every kernel (an untrained model's embeddings ran
    // 11x slower); this thread and rayon's pool (RAYON_NUM_THREADS) flush them to zero.
    crossglg_kernels::flush_denormals(0);
    let cli = Cli::parse();
    let networked = matches!(
        cli.command,
        Command::Serve(_) | Command::Bench(_) | Command::Train(_) | Command::Sweep(_)
    );
    if !networked {
        die_quietly_on_closed_stdout();
    }
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
        // The HTTP client's debug and trace records dump request headers, the LLM API key
        // among them: never below warn, whatever RUST_LOG asks for.
        .add_directive("ureq=warn".parse().expect("static directive"))
        .add_directive("ureq_proto=warn".parse().expect("static directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Demo(a) => cmd_train::demo(a),
        Command::Data(c) => cmd_data::run(c),
        Command::Text(c) => cmd_text::run(c),
        Command::Train(a) => cmd_train::train(a),
        Command::Eval(a) => cmd_train::eval(a),
        Command::Export(a) => cmd_train::export(a),
        Command::Sweep(a) => cmd_train::sweep(a),
        Command::Compare(a) => cmd_train::compare(a),
        Command::Embed(a) => cmd_use::embed(a),
        Command::Enroll(a) => cmd_use::enroll(a),
        Command::Recognize(a) => cmd_use::recognize(a),
        Command::Stream(a) => cmd_use::stream(a),
        Command::Serve(a) => cmd_use::serve(a),
        Command::Plot(c) => cmd_use::plot(c),
        Command::Bench(a) => bench(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes as one line, leaving out a cause whose text the message already
/// holds: the library errors name their source in their own message (so they read well
/// alone) and keep it as `source()` too, which `{:#}` would print a second time.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out += ": ";
        }
        out += &text;
    }
    out
}
