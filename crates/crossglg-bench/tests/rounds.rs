//! `bench --summary`: rounds paired by number, ratios per round, medians and ranges, and clear
//! errors for incomplete round directories.

use crossglg_bench::rounds::summarize;
use crossglg_bench::{BenchConfig, BenchReport, BenchRow, TorchRow};

fn rust_row(name: &str, train: f64, infer: f64, mem: f64) -> BenchRow {
    BenchRow {
        name: name.into(),
        train_ms: train,
        infer_ms: infer,
        train_cpu_ms: 2.0 * train,
        infer_cpu_ms: 2.0 * infer,
        train_samples_per_s: 0.0,
        infer_samples_per_s: 0.0,
        peak_rss_mb: mem,
        params: 1,
        gflop_fwd_per_sample: 1.0,
        train_gflops: 1.0,
        infer_gflops: 1.0,
        gemm_peak_gflops: 4.0,
        torch: None,
    }
}

fn torch_row(name: &str, train: f64, infer: f64, mem: f64) -> TorchRow {
    TorchRow {
        name: name.into(),
        train_ms: train,
        infer_ms: infer,
        train_cpu_ms: 2.0 * train,
        infer_cpu_ms: 2.0 * infer,
        peak_rss_mb: mem,
        params: 1,
    }
}

fn write_round(dir: &std::path::Path, r: usize, rust: Vec<BenchRow>, torch: Vec<TorchRow>) {
    let report = BenchReport {
        config: BenchConfig::default(),
        threads: 2,
        cpu: Default::default(),
        rows: rust,
    };
    let rp = dir.join(format!("rust-{r}.json"));
    std::fs::write(rp, serde_json::to_string(&report).unwrap()).unwrap();
    let tp = dir.join(format!("torch-{r}.json"));
    std::fs::write(tp, serde_json::to_string(&torch).unwrap()).unwrap();
}

#[test]
fn ratios_are_taken_per_round_then_summarised() {
    let dir = tempfile::tempdir().unwrap();
    // PyTorch drifts 100 -> 200 -> 150 ms; Rust is 0.7x of it in every round.
    for (r, t) in [(1, 100.0), (2, 200.0), (3, 150.0)] {
        write_round(
            dir.path(),
            r,
            vec![
                rust_row("stgcn-ref-fused", 0.9 * t, 0.7 * t, 50.0),
                rust_row("model-ctrgcn", 1.1 * t, 0.5 * t, 120.0),
            ],
            vec![
                torch_row("stgcn-ref", t, t, 100.0),
                torch_row("model-ctrgcn", t, t, 100.0),
            ],
        );
    }
    let s = summarize(dir.path()).unwrap();
    assert_eq!(s.rounds, 3);
    let st = &s.variants[0];
    assert_eq!(st.name, "stgcn-ref-fused");
    assert!((st.infer_ms.median - 0.7).abs() < 1e-9);
    assert!((st.infer_ms.max - st.infer_ms.min).abs() < 1e-9);
    assert_eq!((st.infer_ms.rust, st.infer_ms.torch), (0.7 * 150.0, 150.0));
    assert_eq!(st.infer_ms.at_most(0.8), 3);
    assert!((st.peak_rss_mb.median - 0.5).abs() < 1e-9);
    // 1 GFLOP/s of a 4 GFLOP/s peak; PyTorch does the same FLOPs in 1/0.7 the time
    let (r, t) = st.infer_peak_share;
    assert!(
        (r - 0.25).abs() < 1e-9 && (t - 0.175).abs() < 1e-9,
        "{r} {t}"
    );
    let ct = &s.variants[1];
    assert!((ct.train_ms.median - 1.1).abs() < 1e-9);
    assert_eq!(ct.train_ms.at_most(1.0), 0);
    let table = s.table();
    assert!(table.contains("model-ctrgcn") && table.contains("1.10 [1.10-1.10] (0/3)"));
    assert!(table.contains("25 / 18"), "{table}");
}

#[test]
fn incomplete_round_directories_are_errors_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let msg = summarize(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("no rust-1.json"), "{msg}");

    write_round(
        dir.path(),
        1,
        vec![rust_row("model-stgcn", 1.0, 1.0, 1.0)],
        vec![torch_row("model-stgcn", 1.0, 1.0, 1.0)],
    );
    std::fs::write(dir.path().join("rust-2.json"), "{}").unwrap();
    let msg = summarize(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("round 2 has no PyTorch file"), "{msg}");

    write_round(
        dir.path(),
        2,
        vec![rust_row("model-stgcn", 1.0, 1.0, 1.0)],
        vec![torch_row("model-ctrgcn", 1.0, 1.0, 1.0)],
    );
    let msg = summarize(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("round 2 has no PyTorch row for model-stgcn"),
        "{msg}"
    );

    std::fs::write(dir.path().join("rust-2.json"), "not json").unwrap();
    let msg = summarize(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("rust-2.json: not a bench report"), "{msg}");
}
