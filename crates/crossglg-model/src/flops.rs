//! Analytic forward cost of the encoders: multiply-adds of the convolutions, graph
//! aggregations, attention and readout, counted for the reference formulation (what the
//! PyTorch twins compute), so achieved GFLOP/s compare across implementations. Element-wise
//! work (BN, activations, softmax) is not counted. The CrossGLG heads (JID, cross-modal
//! branch) are not counted either: at the standard shapes they are about 2 % of the forward.

use crate::encoder_config::{EncoderConfig, EncoderKind};
use crate::CrossGlgConfig;

/// Spatial partitions of the skeleton graph (self, inward, outward).
const K: usize = 3;

/// Multiply-adds of one encoder forward pass over one skeleton sequence of `frames` frames and
/// `joints` joints.
pub fn encoder_macs(cfg: &EncoderConfig, frames: usize, joints: usize) -> f64 {
    let v = joints as f64;
    let mut t = frames;
    let mut c_in = cfg.in_channels;
    let mut total = 0.0;
    if cfg.kind == EncoderKind::InfoGcn {
        // (I − Aᵏ)·x and the joint embedding
        let c0 = cfg.blocks.first().map_or(0, |b| b.channels);
        total += (t * c_in) as f64 * v * v + (t * c_in * c0) as f64 * v;
        c_in = c0;
    }
    for (i, spec) in cfg.blocks.iter().enumerate() {
        let c_out = spec.channels;
        let s = spec.stride.max(1);
        let t_out = t.div_ceil(s);
        let (ci, co, tf, tof) = (c_in as f64, c_out as f64, t as f64, t_out as f64);
        let kt = cfg.temporal_kernel as f64;
        let proj = ci * co * tof * v; // 1×1 residual / down projection
        total += match cfg.kind {
            EncoderKind::StGcn => {
                let gcn = K as f64 * co * ci * tf * v + K as f64 * co * tf * v * v;
                let tcn = kt * co * co * tof * v;
                gcn + tcn
                    + if i > 0 && (c_in != c_out || s != 1) {
                        proj
                    } else {
                        0.0
                    }
            }
            EncoderKind::CtrGcn => {
                let r = if c_in == 3 || c_in == 9 {
                    8
                } else {
                    (c_in / 8).max(1)
                } as f64;
                let sub = K as f64
                    * (2.0 * r * ci * tf * v // conv1, conv2
                        + co * r * v * v // conv4 on the pairwise relations
                        + co * ci * tf * v // conv3
                        + co * tf * v * v); // channel-wise aggregation
                let down = if c_in != c_out { ci * co * tf * v } else { 0.0 };
                let res = if i > 0 && (c_in != c_out || s != 1) {
                    proj
                } else {
                    0.0
                };
                sub + down + ms_tcn_macs(cfg, c_out, t, t_out, v) + res
            }
            EncoderKind::InfoGcn => {
                let h = cfg.info.heads as f64;
                let d = (c_in / 8).max(1) as f64;
                let attn = 2.0 * h * d * ci * tf * v + h * d * tf * v * v;
                let agg = h * ci * tf * v * v + h * co * ci * tf * v;
                let down = if c_in != c_out { ci * co * tf * v } else { 0.0 };
                let res = if c_in != c_out || s != 1 { proj } else { 0.0 };
                attn + agg + down + ms_tcn_macs(cfg, c_out, t, t_out, v) + res
            }
        };
        c_in = c_out;
        t = t_out;
    }
    total
}

/// CTR-GCN / InfoGCN multi-scale temporal conv on `c` channels.
fn ms_tcn_macs(cfg: &EncoderConfig, c: usize, t: usize, t_out: usize, v: f64) -> f64 {
    let nd = cfg.dilations.len();
    let bc = (c / (nd + 2)) as f64;
    let (c, tf, tof) = (c as f64, t as f64, t_out as f64);
    let kt = cfg.temporal_kernel as f64;
    (nd + 1) as f64 * bc * c * tf * v // the 1×1 convs in front of the dilated and pool branches
        + nd as f64 * kt * bc * bc * tof * v // the dilated temporal convs
        + bc * c * tof * v // the strided 1×1 branch
}

/// Forward FLOPs (2 per multiply-add) of one sample of `cfg.encoder.num_persons` skeletons:
/// the encoder per person, InfoGCN's bottleneck readout and the classifier.
pub fn forward_flops_per_sample(cfg: &CrossGlgConfig, frames: usize, joints: usize) -> f64 {
    let enc = &cfg.encoder;
    let d = enc.blocks.last().map_or(0, |b| b.channels) as f64;
    let readout = if enc.kind == EncoderKind::InfoGcn {
        3.0 * d * d
    } else {
        0.0
    };
    let macs = enc.num_persons as f64 * encoder_macs(enc, frames, joints)
        + readout
        + d * cfg.num_classes as f64;
    2.0 * macs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder_config::BlockSpec;

    fn one_block(kind: EncoderKind, c_in: usize, c_out: usize, stride: usize) -> EncoderConfig {
        EncoderConfig {
            kind,
            in_channels: c_in,
            blocks: vec![BlockSpec {
                channels: c_out,
                stride,
            }],
            temporal_kernel: 3,
            ..EncoderConfig::default()
        }
    }

    #[test]
    fn st_gcn_block_by_hand() {
        // 3→4 channels, 2 frames, 2 joints, kernel 3: 1×1 conv 3·4·3·2·2 = 144, aggregation
        // 3·4·2·2·2 = 96, temporal conv 3·4·4·2·2 = 192; the first block has no residual
        let cfg = one_block(EncoderKind::StGcn, 3, 4, 1);
        assert_eq!(encoder_macs(&cfg, 2, 2), 432.0);
    }

    #[test]
    fn ctr_gcn_block_by_hand() {
        // 16→16 channels (r = 2), 4 frames, 5 joints, kernel 3, dilations [1, 2] (4 branches of
        // 4 channels). Per subset: conv1+conv2 2·2·16·4·5 = 1280, conv4 16·2·25 = 800, conv3
        // 16·16·4·5 = 5120, aggregation 16·4·25 = 1600 → 8800 × 3 = 26400. MS-TCN: 3·4·16·4·5
        // = 3840 + 2·3·4·4·4·5 = 1920 + 4·16·4·5 = 1280 → 7040. Total 33440.
        let mut cfg = one_block(EncoderKind::CtrGcn, 16, 16, 1);
        cfg.dilations = vec![1, 2];
        assert_eq!(encoder_macs(&cfg, 4, 5), 33440.0);
    }

    #[test]
    fn cost_doubles_with_the_frames_except_ctr_gcn_relations() {
        for kind in [
            EncoderKind::StGcn,
            EncoderKind::CtrGcn,
            EncoderKind::InfoGcn,
        ] {
            let cfg = EncoderConfig {
                kind,
                ..EncoderConfig::default()
            };
            let (a, b) = (encoder_macs(&cfg, 32, 25), encoder_macs(&cfg, 64, 25));
            if kind == EncoderKind::CtrGcn {
                // conv4 acts on the time-pooled (V, V) relations: independent of T
                assert!(b / a > 1.8 && b / a < 2.0, "{kind:?}: {a} → {b}");
            } else {
                assert!((b / a - 2.0).abs() < 1e-9, "{kind:?}: {a} → {b}");
            }
        }
    }
}
