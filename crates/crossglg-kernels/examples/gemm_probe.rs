use candle_core::{Device, Tensor};
use std::time::Instant;
fn t(m: usize, n: usize, k: usize) -> candle_core::Result<f64> {
    let a = Tensor::randn(0f32, 1., (m, k), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1., (k, n), &Device::Cpu)?;
    let mut best = f64::MAX;
    for _ in 0..30 {
        let t0 = Instant::now();
        let _c = a.matmul(&b)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * n * k) as f64 / best / 1e9)
}
fn main() -> candle_core::Result<()> {
    for &(m, n, k) in &[
        (64usize, 200usize, 64usize),
        (128, 200, 128),
        (256, 200, 256),
        (64, 800, 64),
        (128, 800, 128),
        (256, 800, 256),
        (64, 1600, 192),
        (256, 400, 768),
    ] {
        println!(
            "{m}x{n}x{k}: {:.1} GFLOP/s  transposed {:.1}",
            t(m, n, k)?,
            t(n, m, k)?
        );
    }
    Ok(())
}
