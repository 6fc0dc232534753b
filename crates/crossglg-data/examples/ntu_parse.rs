//! Times NTU `.skeleton` parsing: every `*.skeleton` file of a folder, read `repeat` times,
//! on `threads` threads (file read + parse + conversion to a `[M, T, 25, 3]` sample, as
//! `read_ntu` does). Prints one JSON line; `bench/ntu_numpy_reader.py` runs it next to a plain
//! Python/numpy reader of the same files.
//!
//! `cargo run -p crossglg-data --example ntu_parse -- <dir> [repeat=200] [threads=2]`

use std::path::PathBuf;
use std::time::Instant;

use crossglg_data::read::{list_files, ntu::read_ntu};
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: ntu_parse <dir> [repeat] [threads]")?,
    );
    let repeat: usize = args.next().map_or(Ok(200), |s| s.parse())?;
    let threads: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let files = list_files(&dir, ".skeleton")?;
    if files.is_empty() {
        return Err(format!("no .skeleton files in {}", dir.display()).into());
    }
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()))
        .sum::<Result<u64, _>>()?;
    let work: Vec<&PathBuf> = (0..repeat).flat_map(|_| files.iter()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    // One untimed pass warms the page cache, as the Python side gets too.
    let checksum: f64 = files
        .iter()
        .map(|f| read_ntu(f, 2).map(|s| s.skeleton.data.iter().map(|&x| x as f64).sum::<f64>()))
        .sum::<Result<f64, _>>()?;
    let start = Instant::now();
    let frames: usize = pool.install(|| {
        work.par_iter()
            .map(|f| read_ntu(f, 2).map(|s| s.skeleton.frames))
            .sum::<Result<usize, _>>()
    })?;
    let secs = start.elapsed().as_secs_f64();
    let total = bytes as f64 * repeat as f64;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{{\"files\": {}, \"threads\": {threads}, \"seconds\": {secs:.4}, \"mb_per_s\": {:.1}, \
             \"files_per_s\": {:.1}, \"frames\": {frames}, \"checksum\": {checksum:.6}}}",
            work.len(),
            total / secs / 1e6,
            work.len() as f64 / secs
        );
    }
    Ok(())
}
