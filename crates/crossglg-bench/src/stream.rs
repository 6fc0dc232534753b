//! `crossglg bench --stream`: the per-window latency of the streaming path (batch 1: window
//! assembly, embedding, gallery lookup) on synthetic motions in the model's layout, against the
//! per-window time of embedding the same windows one at a time and as one batch of 16 in this
//! process. Works with any [`Embedder`]; the CLI passes a trained run.

use crossglg_data::synth::{generate_with_layout, SynthConfig};
use crossglg_data::{Layout, Skeleton};
use crossglg_infer::embedder::Embedder;
use crossglg_infer::gallery::Gallery;
use crossglg_infer::stats::{median, percentile};
use crossglg_infer::stream::{Frame, StreamRecognizer};
use serde::Serialize;

use crate::BenchError;

/// What [`bench_stream`] measured; times in ms per window.
#[derive(Debug, Clone, Serialize)]
pub struct StreamBench {
    pub window: usize,
    pub hop: usize,
    /// Windows timed (the first, which pays for lazy initialisation, is left out).
    pub windows: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    /// Embedding the same kind of windows directly, one at a time (median of 3 repetitions).
    pub embed_batch1_ms: f64,
    /// The same, 16 windows per call, per window.
    pub embed_batch16_ms: f64,
    pub peak_rss_mb: f64,
}

/// `frames` frames of a sample's first person from `start` on (wrapping), as a skeleton.
fn clip(sk: &Skeleton, start: usize, frames: usize) -> Skeleton {
    let mut out = Skeleton::zeros(1, frames, sk.joints, 3);
    for t in 0..frames {
        for v in 0..sk.joints {
            for c in 0..3.min(sk.channels) {
                out.set(0, t, v, c, sk.get(0, (start + t) % sk.frames, v, c));
            }
        }
    }
    out
}

/// Enrolls one synthetic motion per class in `layout`, then streams their frames through a
/// [`StreamRecognizer`] until `windows` windows were recognised.
pub fn bench_stream<E: Embedder + ?Sized>(
    embedder: &E,
    layout: &Layout,
    window: usize,
    hop: usize,
    windows: usize,
) -> Result<StreamBench, BenchError> {
    if window == 0 || hop == 0 || windows == 0 {
        return Err(BenchError::StreamArgs);
    }
    let ds = generate_with_layout(
        &SynthConfig {
            samples_per_class: 1,
            frames: [window, 2 * window],
            seed: 7,
            ..SynthConfig::default()
        },
        layout,
    )?;
    let mut g = Gallery::new(embedder.dim(), "bench");
    let enrolled: Vec<Skeleton> = ds
        .samples
        .iter()
        .map(|s| clip(&s.skeleton, 0, window))
        .collect();
    for (s, e) in ds.samples.iter().zip(embedder.embed(&enrolled)?) {
        let class = s
            .meta
            .label
            .and_then(|c| ds.classes.get(c))
            .ok_or_else(|| BenchError::Unlabelled(s.meta.name.clone()))?;
        g.enroll(class, &[e], Some(&s.meta.name))?;
    }

    // References: the same kind of windows embedded directly, one at a time and 16 at once;
    // time per window, median of 3 repetitions after a warm-up.
    let batch: Vec<Skeleton> = (0..16)
        .map(|i| clip(&ds.samples[i % ds.samples.len()].skeleton, i, window))
        .collect();
    let per_window = |size: usize| -> Result<f64, BenchError> {
        let mut ms = Vec::new();
        for rep in 0..4 {
            let t0 = std::time::Instant::now();
            for chunk in batch.chunks(size) {
                embedder.embed(chunk)?;
            }
            if rep > 0 {
                ms.push(t0.elapsed().as_secs_f64() * 1e3 / batch.len() as f64);
            }
        }
        Ok(median(ms))
    };
    let (ref1, ref16) = (per_window(1)?, per_window(16)?);

    // The stream: the samples' frames one after another until enough windows were recognised.
    let mut rec = StreamRecognizer::new(embedder, &g, None, Ok, window, hop)?;
    let mut lat = Vec::with_capacity(windows);
    let mut index = 0usize;
    'outer: loop {
        for s in &ds.samples {
            for t in 0..s.skeleton.frames {
                let joints = (0..s.skeleton.joints)
                    .map(|v| std::array::from_fn(|c| s.skeleton.get(0, t, v, c)))
                    .collect();
                let frame = Frame {
                    index,
                    line: index + 1,
                    t: index as f64 / 30.0,
                    joints,
                    track: None,
                };
                index += 1;
                if let Some(ev) = rec.push(frame)? {
                    // The first window pays for lazy initialisation; keep it out.
                    if index > window {
                        lat.push(ev.latency_ms);
                    }
                    if lat.len() == windows {
                        break 'outer;
                    }
                }
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok(StreamBench {
        window,
        hop,
        windows: lat.len(),
        mean_ms: lat.iter().sum::<f64>() / lat.len() as f64,
        p50_ms: percentile(&lat, 0.5),
        p95_ms: percentile(&lat, 0.95),
        max_ms: lat[lat.len() - 1],
        embed_batch1_ms: ref1,
        embed_batch16_ms: ref16,
        peak_rss_mb: crate::peak_rss_mb(),
    })
}

impl StreamBench {
    /// The Markdown table `crossglg bench --stream` prints, with ratios against both references.
    pub fn to_markdown(&self) -> String {
        let (mean, ref1, ref16) = (self.mean_ms, self.embed_batch1_ms, self.embed_batch16_ms);
        let mut s = String::new();
        s.push_str("| path | mean ms | p50 ms | p95 ms | max ms | windows/s | x embed batch 1 | x embed batch 16 | peak RSS MB |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|\n");
        s.push_str(&format!(
            "| stream (batch 1) | {mean:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.0} |\n",
            self.p50_ms,
            self.p95_ms,
            self.max_ms,
            1e3 / mean,
            mean / ref1,
            mean / ref16,
            self.peak_rss_mb
        ));
        s.push_str(&format!(
            "| embed, batch 1 | {ref1:.2} | | | | {:.1} | 1 | {:.2} | |\n",
            1e3 / ref1,
            ref1 / ref16
        ));
        s.push_str(&format!(
            "| embed, batch 16 (per window) | {ref16:.2} | | | | {:.1} | {:.2} | 1 | |\n",
            1e3 / ref16,
            ref16 / ref1
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossglg_infer::embedder::EmbedError;

    /// Mean pose: cheap, deterministic, the right shape for any layout.
    struct MeanPose(usize);

    impl Embedder for MeanPose {
        fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(skeletons
                .iter()
                .map(|sk| {
                    let mut e = vec![0.0; self.0 * 3];
                    for t in 0..sk.frames {
                        for v in 0..self.0 {
                            for c in 0..3 {
                                e[v * 3 + c] += sk.get(0, t, v, c) / sk.frames as f32;
                            }
                        }
                    }
                    e
                })
                .collect())
        }
        fn dim(&self) -> usize {
            self.0 * 3
        }
    }

    #[test]
    fn measures_the_requested_windows_and_rejects_zero() {
        let layout = Layout::load("msr20").unwrap();
        let b = bench_stream(&MeanPose(20), &layout, 8, 4, 5).unwrap();
        assert_eq!(b.windows, 5);
        assert!(b.p50_ms <= b.p95_ms && b.p95_ms <= b.max_ms, "{b:?}");
        assert!(b.embed_batch1_ms > 0.0 && b.embed_batch16_ms > 0.0);
        assert!(b.to_markdown().contains("| stream (batch 1) |"));
        let e = bench_stream(&MeanPose(20), &layout, 0, 4, 5).unwrap_err();
        assert!(e.to_string().contains("--window"), "{e}");
    }
}
