//! `cargo run -p crossglg-bench --release --example bench -- [--batch N] [--persons M] [--frames T]
//!  [--joints V] [--classes K]
//!  [--iters I] [--warmup W] [--threads P] [--variant NAME]... [--in-process] [--torch-json FILE]
//!  [--json OUT]`
//! `cargo run -p crossglg-bench --release --example bench -- --summary DIR`: the rounds that
//! `ROUNDS=N bench/run.sh` wrote to DIR, summarised (also written to DIR/summary.json)
use std::process::ExitCode;

use crossglg_bench::{child_main_if_requested, rounds, run, BenchConfig};

fn main() -> ExitCode {
    if let Some(code) = child_main_if_requested() {
        return code;
    }
    let mut cfg = BenchConfig::default();
    let mut json_out = None;
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--summary") {
        let Some(dir) = args.next() else {
            eprintln!("--summary needs a directory");
            return ExitCode::from(2);
        };
        return summary(std::path::Path::new(&dir));
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Option<usize> {
            let v = args.next().and_then(|v| v.parse().ok());
            if v.is_none() {
                eprintln!("{what} needs a number");
            }
            v
        };
        let ok = match a.as_str() {
            "--batch" => num("--batch").map(|v| cfg.batch = v),
            "--persons" => num("--persons").map(|v| cfg.persons = v),
            "--frames" => num("--frames").map(|v| cfg.frames = v),
            "--joints" => num("--joints").map(|v| cfg.joints = v),
            "--classes" => num("--classes").map(|v| cfg.classes = v),
            "--iters" => num("--iters").map(|v| cfg.iters = v),
            "--warmup" => num("--warmup").map(|v| cfg.warmup = v),
            "--threads" => num("--threads").map(|v| cfg.threads = v),
            "--variant" => args.next().map(|v| cfg.variants.push(v)),
            "--torch-json" => args.next().map(|v| cfg.torch_json = Some(v.into())),
            "--json" => args.next().map(|v| json_out = Some(v)),
            "--in-process" => {
                cfg.isolate = false;
                Some(())
            }
            _ => {
                eprintln!("unknown argument {a}");
                None
            }
        };
        if ok.is_none() {
            return ExitCode::from(2);
        }
    }
    match run(&cfg) {
        Ok(report) => match json_out {
            Some(p) => write_json(std::path::Path::new(&p), &report),
            None => ExitCode::SUCCESS,
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn summary(dir: &std::path::Path) -> ExitCode {
    match rounds::summarize(dir) {
        Ok(s) => {
            print!("{}", s.table());
            write_json(&dir.join("summary.json"), &s)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `value` as JSON through a temporary file and a rename.
fn write_json(p: &std::path::Path, value: &impl serde::Serialize) -> ExitCode {
    let tmp = p.with_extension("json.tmp");
    let body = serde_json::to_string_pretty(value).unwrap_or_default();
    match std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, p)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", p.display());
            ExitCode::FAILURE
        }
    }
}
