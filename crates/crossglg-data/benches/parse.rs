//! NTU `.skeleton` parse throughput (a plain timing loop, no harness dependency): the five real
//! files under CROSSGLG_DATA, each parsed in memory 200 times, on 1 and 2 threads.
//!
//! `cargo bench -p crossglg-data --bench parse` (release profile), or for the comparison with
//! Python in the dev profile see `bench/ntu_numpy_reader.py`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crossglg_data::read::{list_files, ntu::parse_ntu_recording};
use rayon::prelude::*;

fn main() {
    let dir = std::env::var_os("CROSSGLG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("ntu-rgbd-samples");
    let files = list_files(&dir, ".skeleton")
        .unwrap_or_else(|e| panic!("set CROSSGLG_DATA to the shared data folder: {e}"));
    let data: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("readable sample file");
            (p, b)
        })
        .collect();
    let bytes: usize = data.iter().map(|(_, b)| b.len()).sum();
    let repeat = 200;
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let work: Vec<&(PathBuf, Vec<u8>)> = (0..repeat).flat_map(|_| data.iter()).collect();
        let start = Instant::now();
        let frames: usize = pool.install(|| {
            work.par_iter()
                .map(|(p, b)| {
                    parse_ntu_recording(b, p)
                        .expect("real file parses")
                        .to_skeleton(2)
                        .frames
                })
                .sum()
        });
        let secs = start.elapsed().as_secs_f64();
        #[allow(clippy::print_stdout)]
        {
            println!(
                "ntu parse, {threads} thread(s): {} files, {frames} frames in {secs:.3} s = {:.1} MB/s",
                work.len(),
                (bytes * repeat) as f64 / secs / 1e6
            );
        }
    }
}
