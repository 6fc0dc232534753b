//! Every fused op against the plain candle composition it replaces: values and gradients within
//! 1e-4 (relative to the magnitude of the reference), on random inputs with odd shapes.

use candle_core::{Device, IndexOp, Result, Tensor, Var, D};
use crossglg_kernels::{
    batch_norm_act, channel_affine_act, channel_joint_bias, graph_conv, graph_conv_infer,
    head_aggregate, head_aggregate_conv_infer, joint_attention, joint_scale, max_pool_time3,
    pairwise_tanh, pointwise_split_infer, subset_aggregate, subset_weight_mm, temporal_conv,
    temporal_conv_bias, temporal_conv_dilated, temporal_conv_infer, temporal_conv_toom,
    temporal_conv_winograd, time_mean, FusedBatchNorm,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

const TOL: f32 = 1e-4;

fn rand_t(rng: &mut StdRng, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

fn rand_var(rng: &mut StdRng, shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&rand_t(rng, shape)?)
}

/// Max |a - b| / max(1, max |b|); infinite where `a` has a NaN or infinity that `b` has not
/// (`max` skips NaN, and debug builds fill kernel outputs with NaN before writing them).
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let (av, bv) = (
        a.flatten_all()?.to_vec1::<f32>()?,
        b.flatten_all()?.to_vec1::<f32>()?,
    );
    if av
        .iter()
        .zip(&bv)
        .any(|(x, y)| !x.is_finite() && y.is_finite())
    {
        return Ok(f32::INFINITY);
    }
    let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?.max(1.0);
    Ok(diff / scale)
}

fn assert_close(what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    let e = rel_err(a, b)?;
    assert!(e <= TOL, "{what}: relative error {e} > {TOL}");
    Ok(())
}

/// Plain temporal conv: zero-pad time, conv2d with a (kt, 1) kernel, keep every s-th frame.
fn plain_tconv(x: &Tensor, w: &Tensor, s: usize, p: usize, d: usize) -> Result<Tensor> {
    let (co, c, kt) = w.dims3()?;
    let xp = x.pad_with_zeros(2, p, p)?;
    let y = xp.conv2d(&w.reshape((co, c, kt, 1))?, 0, 1, d, 1)?;
    let t1 = y.dim(2)?;
    let idx: Vec<u32> = (0..t1).step_by(s).map(|t| t as u32).collect();
    let n = idx.len();
    y.index_select(&Tensor::from_vec(idx, n, &Device::Cpu)?, 2)
}

#[test]
fn temporal_conv_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(1);
    // (n, c, t, v, co, kt, stride, pad, dilation)
    let cases = [
        (2, 3, 10, 5, 4, 9, 1, 4, 1),
        (3, 5, 11, 7, 6, 9, 2, 4, 1),
        (1, 4, 13, 3, 2, 5, 3, 2, 1),
        (2, 2, 7, 4, 3, 3, 2, 0, 1),
        (2, 3, 9, 5, 4, 1, 2, 0, 1),
        (1, 2, 6, 3, 5, 4, 1, 1, 1),
        (2, 3, 12, 5, 4, 5, 1, 4, 2),
        (2, 3, 13, 4, 2, 5, 2, 4, 2),
        (1, 2, 11, 3, 3, 3, 3, 3, 3),
        // 9 taps at stride 1 and 2 (Winograd and Toom-Cook forward, Winograd input gradient
        // at stride 1 when pad < 9), with paddings from none to past the kernel
        (1, 4, 20, 3, 5, 9, 1, 0, 1),
        (2, 3, 16, 2, 4, 9, 1, 2, 1),
        (1, 2, 9, 3, 3, 9, 1, 8, 1),
        (1, 2, 5, 3, 2, 9, 1, 9, 1),
        (2, 3, 21, 2, 3, 9, 2, 1, 1),
    ];
    for (n, c, t, v, co, kt, s, p, d) in cases {
        let x = rand_var(&mut rng, &[n, c, t, v])?;
        let w = rand_var(&mut rng, &[co, c, kt])?;
        let fused = if d == 1 {
            temporal_conv(x.as_tensor(), w.as_tensor(), s, p)?
        } else {
            temporal_conv_dilated(x.as_tensor(), w.as_tensor(), s, p, d)?
        };
        let plain = plain_tconv(x.as_tensor(), w.as_tensor(), s, p, d)?;
        let case = format!("tconv n{n} c{c} t{t} v{v} co{co} k{kt} s{s} p{p} d{d}");
        assert_close(&format!("{case} value"), &fused, &plain)?;
        let r = rand_t(&mut rng, plain.dims())?;
        let gf = (fused * &r)?.sum_all()?.backward()?;
        let gp = (plain * &r)?.sum_all()?.backward()?;
        for (name, var) in [("dx", &x), ("dw", &w)] {
            let a = gf.get(var.as_tensor()).expect("fused grad");
            let b = gp.get(var.as_tensor()).expect("plain grad");
            assert_close(&format!("{case} {name}"), a, b)?;
        }
    }
    Ok(())
}

/// Plain graph conv: 1x1 conv as a batched matmul, K matmuls with the adjacency, sum over K.
fn plain_graph(x: &Tensor, w: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (n, c, t, v) = x.dims4()?;
    let (k, _, vo) = a.dims3()?;
    let co = w.dim(0)? / k;
    let y = w.broadcast_matmul(&x.reshape((n, c, t * v))?)?;
    let y = y.reshape((n, k, co * t, v))?.broadcast_matmul(a)?;
    y.sum(1)?.reshape((n, co, t, vo))
}

#[test]
fn graph_conv_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(2);
    // (n, c, t, v, k, co, vo)
    let cases = [
        (2, 3, 4, 5, 3, 4, 5),
        (3, 5, 3, 7, 2, 3, 7),
        (1, 2, 5, 4, 1, 6, 3),
    ];
    for (n, c, t, v, k, co, vo) in cases {
        let x = rand_var(&mut rng, &[n, c, t, v])?;
        let w = rand_var(&mut rng, &[k * co, c])?;
        let a = rand_var(&mut rng, &[k, v, vo])?;
        let fused = graph_conv(x.as_tensor(), w.as_tensor(), a.as_tensor())?;
        let plain = plain_graph(x.as_tensor(), w.as_tensor(), a.as_tensor())?;
        let case = format!("graph n{n} c{c} t{t} v{v} k{k} co{co} vo{vo}");
        assert_close(&format!("{case} value"), &fused, &plain)?;
        let r = rand_t(&mut rng, plain.dims())?;
        let gf = (fused * &r)?.sum_all()?.backward()?;
        let gp = (plain * &r)?.sum_all()?.backward()?;
        for (name, var) in [("dx", &x), ("dw", &w), ("da", &a)] {
            let ga = gf.get(var.as_tensor()).expect("fused grad");
            let gb = gp.get(var.as_tensor()).expect("plain grad");
            assert_close(&format!("{case} {name}"), ga, gb)?;
        }
    }
    Ok(())
}

/// Plain training batch norm over dim 1 (any rank) + residual + ReLU.
fn plain_bn(
    x: &Tensor,
    g: &Tensor,
    b: &Tensor,
    r: Option<&Tensor>,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let rank = x.rank();
    let mut bshape = vec![1usize; rank];
    bshape[1] = c;
    // (C, rest) view
    let xt = x.transpose(0, 1)?.contiguous()?.reshape((c, ()))?;
    let mean = xt.mean_keepdim(D::Minus1)?;
    let var = xt.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
    let mean = mean.reshape(bshape.as_slice())?;
    let var = var.reshape(bshape.as_slice())?;
    let y = x
        .broadcast_sub(&mean)?
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(&g.reshape(bshape.as_slice())?)?
        .broadcast_add(&b.reshape(bshape.as_slice())?)?;
    let y = match r {
        Some(r) => (y + r)?,
        None => y,
    };
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

#[test]
fn batch_norm_act_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(3);
    let shapes: [&[usize]; 3] = [&[3, 5, 4, 7], &[2, 4, 9], &[5, 3]];
    for shape in shapes {
        for (with_res, relu) in [(false, true), (true, true), (false, false), (true, false)] {
            let c = shape[1];
            let x = rand_var(&mut rng, shape)?;
            // shift/scale so statistics are not trivially 0/1
            let x = Var::from_tensor(&((x.as_tensor() * 3.0)? + 0.5)?)?;
            let g = rand_var(&mut rng, &[c])?;
            let b = rand_var(&mut rng, &[c])?;
            let r = rand_var(&mut rng, shape)?;
            let res = with_res.then_some(r.as_tensor());
            let (fused, stats) =
                batch_norm_act(x.as_tensor(), g.as_tensor(), b.as_tensor(), res, 1e-5, relu)?;
            let plain = plain_bn(x.as_tensor(), g.as_tensor(), b.as_tensor(), res, 1e-5, relu)?;
            let case = format!("bn {shape:?} res={with_res} relu={relu}");
            assert_close(&format!("{case} value"), &fused, &plain)?;
            assert_eq!(stats.count, shape.iter().product::<usize>() / c);
            let gy = rand_t(&mut rng, shape)?;
            let gf = (fused * &gy)?.sum_all()?.backward()?;
            let gp = (plain * &gy)?.sum_all()?.backward()?;
            let mut vars = vec![("dx", &x), ("dgamma", &g), ("dbeta", &b)];
            if with_res {
                vars.push(("dres", &r));
            }
            for (name, var) in vars {
                let a = gf.get(var.as_tensor()).expect("fused grad");
                let bb = gp.get(var.as_tensor()).expect("plain grad");
                assert_close(&format!("{case} {name}"), a, bb)?;
            }
        }
    }
    Ok(())
}

#[test]
fn fused_batch_norm_running_stats_match_candle_nn() -> Result<()> {
    use candle_nn::{BatchNorm, BatchNormConfig, ModuleT, VarBuilder, VarMap};
    let mut rng = StdRng::seed_from_u64(4);
    let c = 4;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &Device::Cpu);
    let cfg = BatchNormConfig {
        eps: 1e-5,
        remove_mean: true,
        affine: true,
        momentum: 0.1,
    };
    let reference: BatchNorm = candle_nn::batch_norm(c, cfg, vb)?;
    let g = rand_t(&mut rng, &[c])?;
    let b = rand_t(&mut rng, &[c])?;
    // give both the same affine parameters
    for (name, val) in [("weight", &g), ("bias", &b)] {
        vm.data()
            .lock()
            .expect("varmap")
            .get(name)
            .expect("bn param")
            .set(val)?;
    }
    let fused = FusedBatchNorm::new(g.clone(), b.clone(), 1e-5, 0.1)?;
    // The same statistics kept in Vars, as a model crate holding candle_nn buffers would.
    let rm = Var::zeros(c, candle_core::DType::F32, &Device::Cpu)?;
    let rv = Var::ones(c, candle_core::DType::F32, &Device::Cpu)?;
    for step in 0..3 {
        let x = ((rand_t(&mut rng, &[3, c, 5, 2])? * 2.0)? + step as f64)?;
        let a = fused.forward_t(&x, None, false, true)?;
        let e = reference.forward_t(&x, true)?;
        assert_close("train output", &a, &e)?;
        let (_, stats) = batch_norm_act(&x, &g, &b, None, 1e-5, false)?;
        stats.update_running(&rm, &rv, 0.1)?;
    }
    assert_close("Var running mean", rm.as_tensor(), reference.running_mean())?;
    assert_close("Var running var", rv.as_tensor(), reference.running_var())?;
    let (rm, rv) = fused.running_stats();
    let erm = reference.running_mean().to_vec1::<f32>()?;
    let erv = reference.running_var().to_vec1::<f32>()?;
    for i in 0..c {
        assert!(
            (rm[i] - erm[i]).abs() < TOL,
            "running mean {i}: {} vs {}",
            rm[i],
            erm[i]
        );
        assert!(
            (rv[i] - erv[i]).abs() < TOL,
            "running var {i}: {} vs {}",
            rv[i],
            erv[i]
        );
    }
    let x = rand_t(&mut rng, &[2, c, 3, 2])?;
    let r = rand_t(&mut rng, &[2, c, 3, 2])?;
    let a = fused.forward_t(&x, Some(&r), true, false)?;
    let e = (reference.forward_t(&x, false)? + &r)?.relu()?;
    assert_close("eval output", &a, &e)
}

#[test]
fn channel_affine_act_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(5);
    let x = rand_t(&mut rng, &[2, 3, 4])?;
    let sc = rand_t(&mut rng, &[3])?;
    let sh = rand_t(&mut rng, &[3])?;
    let got = channel_affine_act(&x, &sc, &sh, None, true)?;
    let want = x
        .broadcast_mul(&sc.reshape((1, 3, 1))?)?
        .broadcast_add(&sh.reshape((1, 3, 1))?)?
        .relu()?;
    assert_close("affine", &got, &want)
}

/// Values and gradients of `fused` against `plain` for the listed variables.
fn check_grads(
    rng: &mut StdRng,
    case: &str,
    fused: Tensor,
    plain: Tensor,
    vars: &[(&str, &Var)],
) -> Result<()> {
    assert_close(&format!("{case} value"), &fused, &plain)?;
    let r = rand_t(rng, plain.dims())?;
    let gf = (fused * &r)?.sum_all()?.backward()?;
    let gp = (plain * &r)?.sum_all()?.backward()?;
    for (name, var) in vars {
        let ga = gf.get(var.as_tensor()).expect("fused grad");
        let gb = gp.get(var.as_tensor()).expect("plain grad");
        assert_close(&format!("{case} {name}"), ga, gb)?;
    }
    Ok(())
}

/// CTR-GCN's aggregation as candle writes it: per subset `x · (m + a)ᵀ` batched over (N, C),
/// summed over subsets.
fn plain_subset(x: &Tensor, m: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (n, s, c, t, v) = x.dims5()?;
    let u = m.dim(3)?;
    let mut y: Option<Tensor> = None;
    for si in 0..s {
        let ms = m.i((.., si))?.broadcast_add(&a.i(si)?)?; // (N, C, U, V)
        let z = x
            .i((.., si))?
            .contiguous()?
            .reshape((n * c, t, v))?
            .matmul(&ms.reshape((n * c, u, v))?.transpose(1, 2)?.contiguous()?)?;
        y = Some(match y {
            Some(y) => (y + z)?,
            None => z,
        });
    }
    y.expect("a subset").reshape((n, c, t, u))
}

#[test]
fn subset_aggregate_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(10);
    // (n, s, c, t, v, u): U = V as in the encoders, plus non-square, tiny, and wider than one
    // 32-lane block
    let cases = [
        (2, 3, 4, 6, 25, 25),
        (3, 1, 2, 5, 7, 4),
        (1, 2, 3, 1, 1, 1),
        (2, 2, 2, 3, 40, 35),
    ];
    for (n, s, c, t, v, u) in cases {
        let x = rand_var(&mut rng, &[n, s, c, t, v])?;
        let m = rand_var(&mut rng, &[n, s, c, u, v])?;
        let a = rand_var(&mut rng, &[s, u, v])?;
        let (xt, mt, at) = (x.as_tensor(), m.as_tensor(), a.as_tensor());
        let case = format!("subset n{n} s{s} c{c} t{t} v{v} u{u}");
        let fused = subset_aggregate(xt, mt, at)?;
        let plain = plain_subset(xt, mt, at)?;
        check_grads(
            &mut rng,
            &case,
            fused,
            plain,
            &[("dx", &x), ("dm", &m), ("da", &a)],
        )?;
    }
    Ok(())
}

/// InfoGCN's SA-GC aggregation as candle writes it: per head `(p ⊙ a) · x` per frame,
/// permuted back to `(N, C, T, U)`, heads concatenated as channel groups.
fn plain_head(x: &Tensor, p: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (n, c, t, v) = x.dims4()?;
    let (_, _, h, u, _) = p.dims5()?;
    let pa = p.broadcast_mul(&a.unsqueeze(0)?.unsqueeze(0)?)?; // (N, T, H, U, V)
    let feat = x
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((n * t, v, c))?;
    let heads = (0..h)
        .map(|hi| {
            pa.i((.., .., hi))?
                .contiguous()?
                .reshape((n * t, u, v))?
                .matmul(&feat)? // (N·T, U, C)
                .reshape((n, t, u, c))?
                .permute((0, 3, 1, 2))
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&heads, 1)
}

#[test]
fn head_aggregate_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(11);
    // (n, c, t, v, h, u)
    let cases = [
        (2, 5, 4, 25, 3, 25),
        (3, 2, 3, 7, 1, 5),
        (1, 1, 1, 1, 2, 1),
        (2, 3, 2, 36, 2, 40),
        // more channels than one forward block (16), the last block partial
        (1, 37, 3, 6, 2, 5),
    ];
    for (n, c, t, v, h, u) in cases {
        let x = rand_var(&mut rng, &[n, c, t, v])?;
        let p = rand_var(&mut rng, &[n, t, h, u, v])?;
        let a = rand_var(&mut rng, &[h, u, v])?;
        let (xt, pt, at) = (x.as_tensor(), p.as_tensor(), a.as_tensor());
        let case = format!("head n{n} c{c} t{t} v{v} h{h} u{u}");
        let fused = head_aggregate(xt, pt, at)?;
        let plain = plain_head(xt, pt, at)?;
        check_grads(
            &mut rng,
            &case,
            fused,
            plain,
            &[("dx", &x), ("dp", &p), ("da", &a)],
        )?;
    }
    Ok(())
}

/// InfoGCN's inference graph conv, fused, against the aggregation as candle ops, then the
/// stacked 1×1 convolution as a matmul, bias, residual and ReLU. Each case runs on one thread
/// (the fused per-sample path) and on eight (fewer samples than twice the threads: the two-op
/// path).
#[test]
fn head_aggregate_conv_infer_matches_aggregation_then_conv() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(12);
    // (n, c, t, v, h, u, co)
    let cases = [
        (2, 5, 4, 25, 3, 25, 7),
        (3, 2, 3, 7, 1, 5, 3),
        // more channels than one block (16), the last block partial
        (2, 37, 3, 6, 2, 5, 9),
        // H·C·U = 3000 floats a frame: tiles of 43 frames, the second one partial
        (2, 40, 50, 25, 3, 25, 16),
    ];
    for (n, c, t, v, h, u, co) in cases {
        let x = rand_t(&mut rng, &[n, c, t, v])?;
        let p = rand_t(&mut rng, &[n, t, h, u, v])?;
        let a = rand_t(&mut rng, &[h, u, v])?;
        let w = rand_t(&mut rng, &[co, h * c])?;
        let b = rand_t(&mut rng, &[co])?;
        let r = rand_t(&mut rng, &[n, co, t, u])?;
        let z = plain_head(&x, &p, &a)?.reshape((n, h * c, t * u))?;
        let conv = w
            .broadcast_matmul(&z)?
            .reshape((n, co, t, u))?
            .broadcast_add(&b.reshape((1, co, 1, 1))?)?;
        for threads in [1, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(candle_core::Error::wrap)?;
            for (res, relu) in [(false, false), (true, true), (true, false)] {
                let want = if res { (&conv + &r)? } else { conv.clone() };
                let want = if relu { want.relu()? } else { want };
                let got = pool.install(|| {
                    head_aggregate_conv_infer(&x, &p, &a, &w, Some(&b), res.then_some(&r), relu)
                })?;
                let case = format!("n{n} c{c} t{t} h{h} co{co} threads {threads} res {res}");
                assert_close(&case, &got, &want)?;
            }
            let got =
                pool.install(|| head_aggregate_conv_infer(&x, &p, &a, &w, None, None, false))?;
            let want = w.broadcast_matmul(&z)?.reshape((n, co, t, u))?;
            assert_close("no bias", &got, &want)?;
        }
        // mismatched shapes are errors
        let w_bad = rand_t(&mut rng, &[co, h * c + 1])?;
        assert!(head_aggregate_conv_infer(&x, &p, &a, &w_bad, None, None, false).is_err());
        let r_bad = rand_t(&mut rng, &[n, co + 1, t, u])?;
        assert!(head_aggregate_conv_infer(&x, &p, &a, &w, None, Some(&r_bad), false).is_err());
    }
    let xv = rand_var(&mut rng, &[2, 2, 3, 4])?;
    let (p, a, w) = (
        rand_t(&mut rng, &[2, 3, 1, 4, 4])?,
        rand_t(&mut rng, &[1, 4, 4])?,
        rand_t(&mut rng, &[3, 2])?,
    );
    assert!(head_aggregate_conv_infer(xv.as_tensor(), &p, &a, &w, None, None, false).is_err());
    Ok(())
}

/// InfoGCN's `SelfAttention` as candle ops: permute, LayerNorm over C, projection, split into
/// heads, scaled scores, softmax.
fn plain_attention(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    w: &Tensor,
    b: &Tensor,
    heads: usize,
) -> Result<Tensor> {
    let (n, c, t, v) = x.dims4()?;
    let d = w.dim(0)? / (2 * heads);
    let y = x
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((n * t, v, c))?;
    let mean = y.mean_keepdim(D::Minus1)?;
    let yc = y.broadcast_sub(&mean)?;
    let var = yc.sqr()?.mean_keepdim(D::Minus1)?;
    let y = yc
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .broadcast_mul(gamma)?
        .broadcast_add(beta)?;
    let qk = y.broadcast_matmul(&w.t()?)?.broadcast_add(b)?;
    let split = |off: usize| -> Result<Tensor> {
        qk.narrow(2, off, heads * d)?
            .reshape((n * t, v, heads, d))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k) = (split(0)?, split(heads * d)?);
    let s = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (d as f64).sqrt())?;
    candle_nn::ops::softmax(&s, D::Minus1)?.reshape((n, t, heads, v, v))
}

#[test]
fn joint_attention_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(13);
    // (n, c, t, v, heads, d)
    let cases = [(2, 16, 3, 25, 3, 2), (3, 5, 2, 7, 1, 3), (1, 8, 1, 1, 2, 4)];
    for (n, c, t, v, heads, d) in cases {
        let x = rand_var(&mut rng, &[n, c, t, v])?;
        let gamma = rand_var(&mut rng, &[c])?;
        let beta = rand_var(&mut rng, &[c])?;
        let w = rand_var(&mut rng, &[2 * heads * d, c])?;
        let b = rand_var(&mut rng, &[2 * heads * d])?;
        let ts = [&x, &gamma, &beta, &w, &b].map(|v| v.as_tensor().clone());
        let fused = joint_attention(&ts[0], &ts[1], &ts[2], &ts[3], &ts[4], heads, 1e-5)?;
        let plain = plain_attention(&ts[0], &ts[1], &ts[2], &ts[3], &ts[4], heads)?;
        let case = format!("attention n{n} c{c} t{t} v{v} heads{heads} d{d}");
        let vars = [
            ("dx", &x),
            ("dgamma", &gamma),
            ("dbeta", &beta),
            ("dw", &w),
            ("db", &b),
        ];
        check_grads(&mut rng, &case, fused, plain, &vars)?;
    }
    Ok(())
}

#[test]
fn temporal_conv_bias_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(14);
    // (n, c, t, v, co, kt, stride, pad, dilation)
    for (n, c, t, v, co, kt, s, p, d) in
        [(2, 3, 10, 5, 4, 9, 1, 4, 1), (3, 2, 13, 4, 3, 5, 2, 4, 2)]
    {
        let x = rand_var(&mut rng, &[n, c, t, v])?;
        let w = rand_var(&mut rng, &[co, c, kt])?;
        let b = rand_var(&mut rng, &[co])?;
        let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
        let no_bias = temporal_conv_bias(xt, wt, None, s, p, d)?;
        assert_close(
            "tconv without bias",
            &no_bias,
            &plain_tconv(xt, wt, s, p, d)?,
        )?;
        let fused = temporal_conv_bias(xt, wt, Some(bt), s, p, d)?;
        let plain = plain_tconv(xt, wt, s, p, d)?.broadcast_add(&bt.reshape((co, 1, 1))?)?;
        let case = format!("tconv+bias n{n} c{c} t{t} k{kt} s{s} d{d}");
        check_grads(
            &mut rng,
            &case,
            fused,
            plain,
            &[("dx", &x), ("dw", &w), ("db", &b)],
        )?;
    }
    Ok(())
}

#[test]
fn max_pool_time3_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(15);
    for (shape, stride) in [
        ([2, 3, 9, 5], 1),
        ([2, 2, 9, 4], 2),
        ([1, 2, 10, 3], 3),
        ([1, 1, 1, 2], 2),
    ] {
        let x = rand_var(&mut rng, &shape)?;
        let xt = x.as_tensor();
        let fused = max_pool_time3(xt, stride)?;
        // replicate padding gives the same maxima as -inf padding
        let t = shape[2];
        let xp = xt.pad_with_same(2, 1, 1)?;
        let m = xp
            .narrow(2, 0, t)?
            .maximum(&xp.narrow(2, 1, t)?)?
            .maximum(&xp.narrow(2, 2, t)?)?;
        let idx: Vec<u32> = (0..t).step_by(stride).map(|i| i as u32).collect();
        let k = idx.len();
        let plain = m.index_select(&Tensor::from_vec(idx, k, &Device::Cpu)?, 2)?;
        let case = format!("max pool {shape:?} stride {stride}");
        check_grads(&mut rng, &case, fused, plain, &[("dx", &x)])?;
    }
    Ok(())
}

#[test]
fn time_mean_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(12);
    for shape in [[2, 3, 7, 5], [1, 1, 1, 1], [3, 2, 64, 25]] {
        let x = rand_var(&mut rng, &shape)?;
        let fused = time_mean(x.as_tensor())?;
        let plain = x.as_tensor().mean_keepdim(2)?;
        check_grads(
            &mut rng,
            &format!("time mean {shape:?}"),
            fused,
            plain,
            &[("dx", &x)],
        )?;
    }
    Ok(())
}

#[test]
fn bad_inputs_are_errors_not_panics() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(6);
    let x = rand_t(&mut rng, &[2, 3, 5, 4])?;
    let msg = |r: Result<Tensor>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg(temporal_conv(&x, &rand_t(&mut rng, &[4, 2, 3])?, 1, 1)).contains("input channels"));
    assert!(msg(temporal_conv(&x, &rand_t(&mut rng, &[4, 3, 3])?, 0, 1)).contains("stride"));
    assert!(msg(temporal_conv(&x, &rand_t(&mut rng, &[4, 3, 9])?, 1, 0)).contains("longer"));
    let w = rand_t(&mut rng, &[6, 3])?;
    assert!(msg(graph_conv(&x, &w, &rand_t(&mut rng, &[3, 5, 4])?)).contains("joints"));
    assert!(msg(graph_conv(
        &x,
        &rand_t(&mut rng, &[7, 3])?,
        &rand_t(&mut rng, &[3, 4, 4])?
    ))
    .contains("multiple"));
    let g = rand_t(&mut rng, &[2])?;
    let e = batch_norm_act(&x, &g, &g, None, 1e-5, true)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("gamma"), "{e}");
    let m = rand_t(&mut rng, &[2, 1, 3, 4, 4])?;
    let xs = x.reshape((2, 1, 3, 5, 4))?;
    assert!(msg(subset_aggregate(&xs, &m, &rand_t(&mut rng, &[2, 4, 4])?)).contains("match"));
    let p = rand_t(&mut rng, &[2, 4, 2, 4, 4])?;
    assert!(msg(head_aggregate(&x, &p, &rand_t(&mut rng, &[2, 4, 4])?)).contains("match"));
    let w3 = rand_t(&mut rng, &[4, 3, 3])?;
    assert!(msg(temporal_conv_bias(
        &x,
        &w3,
        Some(&rand_t(&mut rng, &[3])?),
        1,
        1,
        1
    ))
    .contains("bias"));
    let (g3, w6) = (rand_t(&mut rng, &[3])?, rand_t(&mut rng, &[6, 3])?);
    let e = msg(joint_attention(
        &x,
        &g3,
        &g3,
        &w6,
        &rand_t(&mut rng, &[6])?,
        2,
        1e-5,
    ));
    assert!(e.contains("heads"), "{e}");
    let xi = x.to_dtype(candle_core::DType::F64)?;
    assert!(msg(temporal_conv(&xi, &rand_t(&mut rng, &[4, 3, 3])?, 1, 1)).contains("f32"));
    let _ = x.i(0)?;
    Ok(())
}

#[test]
fn tune_allocator_is_accepted_by_glibc() {
    // On glibc every mallopt call must succeed; elsewhere the function reports that it did nothing.
    let applied = crossglg_kernels::tune_allocator();
    assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
}

/// Weight gradients are sums over the batch computed in parallel; they must come out
/// bit-identical whatever the number of threads, so a seeded training run is reproducible.
#[test]
fn weight_gradients_do_not_depend_on_the_thread_count() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(9);
    let (n, c, t, v, k, co) = (37, 6, 12, 5, 3, 8);
    let x = rand_var(&mut rng, &[n, c, t, v])?;
    let wg = rand_var(&mut rng, &[k * co, c])?;
    let a = rand_var(&mut rng, &[k, v, v])?;
    let wt = rand_var(&mut rng, &[co, c, 5])?;
    let rg = rand_t(&mut rng, &[n, co, t, v])?;
    let rt = rand_t(&mut rng, &[n, co, t / 2, v])?;
    let xs = rand_t(&mut rng, &[n, 3, 2, t, v])?;
    let ms = rand_t(&mut rng, &[n, 3, 2, v, v])?;
    let rs = rand_t(&mut rng, &[n, 2, t, v])?;
    let p = rand_t(&mut rng, &[n, t, 3, v, v])?;
    let rh = rand_t(&mut rng, &[n, 3 * c, t, v])?;
    let grads = |threads: usize| -> Result<Vec<Vec<f32>>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            let g = (graph_conv(x.as_tensor(), wg.as_tensor(), a.as_tensor())? * &rg)?
                .sum_all()?
                .backward()?;
            let h = (temporal_conv(x.as_tensor(), wt.as_tensor(), 2, 2)? * &rt)?
                .sum_all()?
                .backward()?;
            let s = (subset_aggregate(&xs, &ms, a.as_tensor())? * &rs)?
                .sum_all()?
                .backward()?;
            let hd = (head_aggregate(x.as_tensor(), &p, a.as_tensor())? * &rh)?
                .sum_all()?
                .backward()?;
            [
                g.get(wg.as_tensor()),
                g.get(a.as_tensor()),
                h.get(wt.as_tensor()),
                s.get(a.as_tensor()),
                hd.get(a.as_tensor()),
            ]
            .into_iter()
            .map(|t| t.expect("a gradient").flatten_all()?.to_vec1::<f32>())
            .collect()
        })
    };
    let one = grads(1)?;
    for threads in [2, 3, 5] {
        let other = grads(threads)?;
        for (i, (p, q)) in one.iter().zip(&other).enumerate() {
            let same = p.iter().zip(q).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "gradient {i} differs between 1 and {threads} threads");
        }
    }
    Ok(())
}

/// The Winograd convolution against the direct one: tile counts that do and do not divide the
/// output length, paddings from none to "same", strides 1 to 3 (odd and even lengths), kernels
/// shorter than 9 taps per phase, one joint and many, with and without bias; and it refuses
/// inputs that track gradients.
#[test]
fn temporal_conv_winograd_matches_direct() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(9);
    // (n, c, t, v, co, kt, stride, pad)
    let cases = [
        (2, 3, 10, 5, 4, 9, 1, 4),
        (3, 5, 9, 1, 6, 9, 1, 0),
        (1, 4, 64, 25, 7, 9, 1, 4),
        (5, 6, 16, 3, 2, 9, 1, 4),
        (2, 2, 7, 4, 3, 9, 1, 1),
        (2, 3, 20, 5, 4, 9, 1, 2),
        (4, 8, 31, 2, 5, 9, 1, 3),
        (2, 3, 64, 5, 4, 9, 2, 4),
        (3, 4, 33, 3, 5, 9, 2, 4),
        (2, 3, 17, 2, 3, 9, 3, 4),
        (2, 5, 12, 3, 4, 5, 1, 2),
        (2, 3, 11, 4, 2, 3, 2, 1),
        (1, 2, 40, 3, 3, 18, 2, 8),
    ];
    for (i, &(n, c, t, v, co, kt, s, pad)) in cases.iter().enumerate() {
        let x = (rand_t(&mut rng, &[n, c, t, v])? * 3.0)?;
        let w = rand_t(&mut rng, &[co, c, kt])?;
        let b = rand_t(&mut rng, &[co])?;
        for bias in [None, Some(&b)] {
            let want = temporal_conv_bias(&x, &w, bias, s, pad, 1)?;
            let got = temporal_conv_winograd(&x, &w, bias, s, pad)?;
            assert_close(&format!("case {i} bias {}", bias.is_some()), &got, &want)?;
        }
    }
    let xv = rand_var(&mut rng, &[1, 2, 9, 3])?;
    let w = rand_t(&mut rng, &[2, 2, 9])?;
    assert!(temporal_conv_winograd(xv.as_tensor(), &w, None, 1, 0).is_err());
    let x = rand_t(&mut rng, &[1, 2, 30, 3])?;
    let w10 = rand_t(&mut rng, &[2, 2, 10])?;
    assert!(temporal_conv_winograd(&x, &w10, None, 1, 4).is_err());
    Ok(())
}

/// One-dimensional Toom-Cook F(m, r) per time phase against the direct kernel: strides 1–3,
/// 9-, 5- and 3-tap kernels, paddings below and above (k − 1) / 2, tiles that do not divide
/// the output; the inference dispatch (9 taps at stride 2) through `temporal_conv_infer`.
#[test]
fn temporal_conv_toom_matches_direct() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(19);
    // (n, c, t, v, co, kt, stride, pad, m)
    let cases = [
        (2, 3, 64, 5, 4, 9, 2, 4, 3),
        (3, 4, 33, 3, 5, 9, 2, 4, 3),
        (2, 5, 32, 25, 6, 9, 2, 4, 2),
        (2, 3, 17, 2, 3, 9, 2, 4, 4),
        (2, 3, 20, 4, 3, 5, 1, 2, 3),
        (1, 4, 16, 3, 2, 5, 1, 2, 4),
        (2, 3, 21, 2, 3, 9, 3, 4, 3),
        (2, 2, 11, 4, 2, 3, 2, 1, 3),
        (2, 3, 12, 3, 4, 9, 2, 1, 2),
        (1, 2, 9, 2, 3, 9, 2, 6, 3),
    ];
    for (i, &(n, c, t, v, co, kt, s, pad, m)) in cases.iter().enumerate() {
        let x = (rand_t(&mut rng, &[n, c, t, v])? * 3.0)?;
        let w = rand_t(&mut rng, &[co, c, kt])?;
        let b = rand_t(&mut rng, &[co])?;
        for bias in [None, Some(&b)] {
            let want = temporal_conv_bias(&x, &w, bias, s, pad, 1)?;
            let got = temporal_conv_toom(&x, &w, bias, s, pad, m)?;
            assert_close(&format!("case {i} bias {}", bias.is_some()), &got, &want)?;
        }
    }
    // the dispatch, with an epilogue
    let x = rand_t(&mut rng, &[3, 4, 30, 5])?;
    let w = rand_t(&mut rng, &[6, 4, 9])?;
    let b = rand_t(&mut rng, &[6])?;
    let r = rand_t(&mut rng, &[3, 8, 15, 5])?;
    let want = (temporal_conv_bias(&x, &w, Some(&b), 2, 4, 1)? + r.narrow(1, 2, 6)?)?.relu()?;
    let got = temporal_conv_infer(&x, &w, Some(&b), 2, 4, 1, Some((&r, 2)), true)?;
    assert_close("dispatch", &got, &want)?;
    let xv = rand_var(&mut rng, &[1, 2, 9, 3])?;
    assert!(temporal_conv_toom(xv.as_tensor(), &w.narrow(1, 0, 2)?, None, 2, 4, 3).is_err());
    assert!(
        temporal_conv_toom(&x, &w, None, 1, 4, 3).is_err(),
        "F(3, 9) needs 11 points"
    );
    Ok(())
}

/// Stacked 1×1 convs split into one tensor per row group, against one conv then slices and
/// ReLU; bad splits and tracked inputs are errors.
#[test]
fn pointwise_split_infer_matches_conv_then_slices() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(23);
    let (n, c, t, v) = (3, 5, 7, 4);
    let x = rand_t(&mut rng, &[n, c, t, v])?;
    let splits = [2, 3, 1];
    let w = rand_t(&mut rng, &[6, c])?;
    let b = rand_t(&mut rng, &[6])?;
    let full = temporal_conv_bias(&x, &w.reshape((6, c, 1))?, Some(&b), 1, 0, 1)?;
    for relu in [false, true] {
        let got = pointwise_split_infer(&x, &w, &b, &splits, relu)?;
        assert_eq!(got.len(), 3);
        let mut at = 0;
        for (g, s) in got.iter().zip(splits) {
            let want = full.narrow(1, at, s)?;
            let want = if relu { want.relu()? } else { want };
            assert_close(&format!("group at {at}, relu {relu}"), g, &want)?;
            at += s;
        }
    }
    assert!(pointwise_split_infer(&x, &w, &b, &[2, 3], true).is_err());
    assert!(pointwise_split_infer(&x, &w, &b, &[6, 0], true).is_err());
    let xv = rand_var(&mut rng, &[n, c, t, v])?;
    assert!(pointwise_split_infer(xv.as_tensor(), &w, &b, &splits, true).is_err());
    let empty = rand_t(&mut rng, &[0, c, t, v])?;
    let e = pointwise_split_infer(&empty, &w, &b, &splits, true)?;
    assert_eq!(e[1].dims(), [0, 3, t, v]);
    Ok(())
}

/// Winograd (and at stride 2 Toom-Cook F(4, 5) per phase) vs direct 9-tap convolution at the
/// ST-GCN shapes (batch 16 × 2 persons), best of ten. Measurement only:
/// `cargo test -p crossglg-kernels --release --test fused_vs_plain -- --ignored --nocapture`
#[test]
#[ignore]
fn time_temporal_conv9() -> Result<()> {
    use std::time::Instant;
    let mut rng = StdRng::seed_from_u64(3);
    for (c, t, s) in [
        (64, 64, 1),
        (128, 32, 1),
        (256, 16, 1),
        (128, 64, 2),
        (256, 32, 2),
    ] {
        let x = rand_t(&mut rng, &[32, c, t, 25])?;
        let w = (rand_t(&mut rng, &[c, c, 9])? * 0.1)?;
        let b = rand_t(&mut rng, &[c])?;
        let (mut direct, mut wino, mut toom) = (f64::MAX, f64::MAX, f64::NAN);
        for _ in 0..10 {
            let t0 = Instant::now();
            temporal_conv_bias(&x, &w, Some(&b), s, 4, 1)?;
            direct = direct.min(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            temporal_conv_winograd(&x, &w, Some(&b), s, 4)?;
            wino = wino.min(t0.elapsed().as_secs_f64());
            if s > 1 {
                let t0 = Instant::now();
                temporal_conv_toom(&x, &w, Some(&b), s, 4, 4)?;
                toom = toom.min(t0.elapsed().as_secs_f64());
            }
        }
        eprintln!(
            "C={c} T={t} stride {s}: direct {:.1} ms, Winograd {:.1} ms ({:.2}), F(4, 5) per phase {:.1} ms ({:.2})",
            direct * 1e3,
            wino * 1e3,
            wino / direct,
            toom * 1e3,
            toom / direct
        );
    }
    Ok(())
}

/// The relation op against broadcast-subtract + tanh + a concatenated row of ones, values and
/// gradient (the ones row gets no gradient through).
#[test]
fn pairwise_tanh_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(21);
    for &(n, s, r, v) in &[(2, 3, 4, 5), (1, 1, 1, 3), (3, 2, 8, 25)] {
        let q = Var::from_tensor(&(rand_t(&mut rng, &[n, 2 * s * r, v])? * 2.0)?)?;
        let x1 = q.narrow(1, 0, s * r)?.reshape((n, s, r, v, 1))?;
        let x2 = q.narrow(1, s * r, s * r)?.reshape((n, s, r, 1, v))?;
        let plain = x1.broadcast_sub(&x2)?.tanh()?.reshape((n, s, r, v * v))?;
        let ones = Tensor::ones((n, s, 1, v * v), candle_core::DType::F32, &Device::Cpu)?;
        let plain = Tensor::cat(&[&plain, &ones], 2)?;
        let fused = pairwise_tanh(&q, s)?;
        assert_close("pairwise_tanh", &fused, &plain)?;
        let up = rand_t(&mut rng, plain.dims())?;
        let gp = (&plain * &up)?.sum_all()?.backward()?;
        let gf = (&fused * &up)?.sum_all()?.backward()?;
        assert_close("pairwise_tanh dq", gf.get(&q).unwrap(), gp.get(&q).unwrap())?;
    }
    assert!(pairwise_tanh(&rand_t(&mut rng, &[1, 5, 3])?, 2).is_err());
    Ok(())
}

/// The per-subset weight product against candle's broadcast batched matmul, values and both
/// gradients, including a batch larger than one gradient group.
#[test]
fn subset_weight_mm_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(22);
    for &(n, s, c, k, l) in &[(2, 3, 4, 5, 7), (1, 1, 1, 1, 1), (33, 3, 6, 9, 25)] {
        let w = rand_var(&mut rng, &[s, c, k])?;
        let x = rand_var(&mut rng, &[n, s, k, l])?;
        let plain = w.unsqueeze(0)?.broadcast_matmul(&x)?;
        let fused = subset_weight_mm(&w, &x)?;
        assert_close("subset_weight_mm", &fused, &plain)?;
        let up = rand_t(&mut rng, plain.dims())?;
        let gp = (&plain * &up)?.sum_all()?.backward()?;
        let gf = (&fused * &up)?.sum_all()?.backward()?;
        assert_close("dw", gf.get(&w).unwrap(), gp.get(&w).unwrap())?;
        assert_close("dx", gf.get(&x).unwrap(), gp.get(&x).unwrap())?;
    }
    let w = rand_t(&mut rng, &[2, 3, 4])?;
    assert!(subset_weight_mm(&w, &rand_t(&mut rng, &[1, 2, 5, 3])?).is_err());
    Ok(())
}

/// The inference convolution with its epilogue against convolution, then residual channels
/// sliced out of a wider buffer, then ReLU: through Winograd (9 taps, stride 1) and the direct
/// kernel (strides, dilation, other kernel sizes).
#[test]
fn temporal_conv_infer_matches_conv_then_epilogue() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(31);
    // (n, c, t, v, co, kt, stride, pad, dilation)
    let cases = [
        (2, 3, 20, 5, 4, 9, 1, 4, 1),
        (3, 4, 16, 3, 5, 9, 2, 4, 1),
        (2, 5, 12, 4, 3, 5, 1, 4, 2),
        (2, 6, 9, 2, 4, 1, 2, 0, 1),
    ];
    for (i, &(n, c, t, v, co, kt, s, pad, d)) in cases.iter().enumerate() {
        let x = rand_t(&mut rng, &[n, c, t, v])?;
        let w = rand_t(&mut rng, &[co, c, kt])?;
        let b = rand_t(&mut rng, &[co])?;
        let conv = temporal_conv_bias(&x, &w, Some(&b), s, pad, d)?;
        let t_out = conv.dim(2)?;
        let wide = rand_t(&mut rng, &[n, co + 3, t_out, v])?;
        for (res, relu) in [
            (None, false),
            (None, true),
            (Some(2), false),
            (Some(3), true),
        ] {
            let want = match res {
                Some(off) => (&conv + wide.narrow(1, off, co)?)?,
                None => conv.clone(),
            };
            let want = if relu { want.relu()? } else { want };
            let got =
                temporal_conv_infer(&x, &w, Some(&b), s, pad, d, res.map(|o| (&wide, o)), relu)?;
            assert_close(&format!("case {i} res {res:?} relu {relu}"), &got, &want)?;
        }
        let no_bias = temporal_conv_infer(&x, &w, None, s, pad, d, None, false)?;
        assert_close(
            &format!("case {i} no bias"),
            &no_bias,
            &temporal_conv_bias(&x, &w, None, s, pad, d)?,
        )?;
        // a residual that does not fit is an error, not a panic
        assert!(temporal_conv_infer(&x, &w, None, s, pad, d, Some((&wide, 4)), false).is_err());
    }
    let xv = rand_var(&mut rng, &[1, 2, 9, 3])?;
    let w = rand_t(&mut rng, &[2, 2, 9])?;
    assert!(temporal_conv_infer(xv.as_tensor(), &w, None, 1, 4, 1, None, false).is_err());
    Ok(())
}

/// The inference graph conv with its epilogue against graph conv, then a per-(channel, joint)
/// offset broadcast over frames, then ReLU.
#[test]
fn graph_conv_infer_matches_graph_conv_then_epilogue() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(41);
    let (n, c, t, v, k, co, vo) = (3, 4, 5, 6, 3, 5, 6);
    let x = rand_t(&mut rng, &[n, c, t, v])?;
    let w = rand_t(&mut rng, &[k * co, c])?;
    let off = rand_t(&mut rng, &[co, vo])?;
    // a dense adjacency (conv-then-aggregate path) and a sparse one (aggregate-first path):
    // about a fifth of the entries, several per output joint, one output joint without any
    let sparse: Vec<f32> = (0..k * v * vo)
        .map(|i| {
            let (src, dst) = ((i / vo) % v, i % vo);
            let keep = dst != 1 && (src * 7 + dst * 3 + i / (v * vo)) % 4 == 0;
            if keep {
                rng.random_range(-1.0..1.0)
            } else {
                0.0
            }
        })
        .collect();
    let nonzero = sparse.iter().filter(|a| **a != 0.0).count();
    assert!(
        nonzero > k * vo && 4 * nonzero <= sparse.len(),
        "{nonzero} non-zeros"
    );
    let sparse = Tensor::from_vec(sparse, (k, v, vo), &Device::Cpu)?;
    for a in [rand_t(&mut rng, &[k, v, vo])?, sparse] {
        let base = graph_conv(&x, &w, &a)?.broadcast_add(&off.reshape((1, co, 1, vo))?)?;
        for relu in [false, true] {
            let want = if relu { base.relu()? } else { base.clone() };
            let got = graph_conv_infer(&x, &w, &a, &off, relu)?;
            assert_close(&format!("relu {relu}"), &got, &want)?;
        }
    }
    let a = rand_t(&mut rng, &[k, v, vo])?;
    assert!(graph_conv_infer(&x, &w, &a, &rand_t(&mut rng, &[co, vo + 1])?, false).is_err());
    let xv = rand_var(&mut rng, &[n, c, t, v])?;
    assert!(graph_conv_infer(xv.as_tensor(), &w, &a, &off, false).is_err());
    Ok(())
}

/// Per-joint scaling against candle's broadcast multiply, values and both gradients.
#[test]
fn joint_scale_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(51);
    for &(n, c, t, v) in &[(2, 3, 4, 5), (1, 1, 1, 1), (3, 7, 9, 25)] {
        let x = rand_var(&mut rng, &[n, c, t, v])?;
        let w = rand_var(&mut rng, &[n, 1, 1, v])?;
        let plain = x.broadcast_mul(&w)?;
        let fused = joint_scale(&x, &w)?;
        assert_close("joint_scale", &fused, &plain)?;
        let up = rand_t(&mut rng, plain.dims())?;
        let gp = (&plain * &up)?.sum_all()?.backward()?;
        let gf = (&fused * &up)?.sum_all()?.backward()?;
        assert_close("dx", gf.get(&x).unwrap(), gp.get(&x).unwrap())?;
        assert_close("dw", gf.get(&w).unwrap(), gp.get(&w).unwrap())?;
    }
    let x = rand_t(&mut rng, &[2, 3, 4, 5])?;
    assert!(joint_scale(&x, &rand_t(&mut rng, &[2, 1, 1, 4])?).is_err());
    Ok(())
}

/// The per-(channel, joint) bias add against candle's broadcast add, values and both
/// gradients.
#[test]
fn channel_joint_bias_matches_plain() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(53);
    for &(n, c, t, v) in &[(2, 3, 4, 5), (1, 1, 1, 1), (3, 7, 9, 25)] {
        let x = rand_var(&mut rng, &[n, c, t, v])?;
        let b = rand_var(&mut rng, &[c, v])?;
        let plain = x.broadcast_add(&b.reshape((1, c, 1, v))?)?;
        let fused = channel_joint_bias(&x, &b)?;
        assert_close("channel_joint_bias", &fused, &plain)?;
        let up = rand_t(&mut rng, plain.dims())?;
        let gp = (&plain * &up)?.sum_all()?.backward()?;
        let gf = (&fused * &up)?.sum_all()?.backward()?;
        assert_close("dx", gf.get(&x).unwrap(), gp.get(&x).unwrap())?;
        assert_close("db", gf.get(&b).unwrap(), gp.get(&b).unwrap())?;
    }
    let x = rand_t(&mut rng, &[2, 3, 4, 5])?;
    assert!(channel_joint_bias(&x, &rand_t(&mut rng, &[3, 4])?).is_err());
    Ok(())
}

/// ST-GCN-like partitions of a `v`-joint chain: self links, inward and outward edges.
fn chain_partitions(v: usize) -> Result<Tensor> {
    let mut a = vec![0f32; 3 * v * v];
    for j in 0..v {
        a[j * v + j] = 1.0;
        if j + 1 < v {
            a[v * v + (j + 1) * v + j] = 0.5;
            a[2 * v * v + j * v + j + 1] = 0.7;
        }
    }
    Tensor::from_vec(a, (3, v, v), &Device::Cpu)
}

/// The inference graph conv at the ST-GCN shapes (batch 16 × 2 persons, 3 partitions), best of
/// ten, against the training kernel without epilogue. Measurement only:
/// `cargo test -p crossglg-kernels --release --test fused_vs_plain -- --ignored --nocapture`
#[test]
#[ignore]
fn time_graph_conv() -> Result<()> {
    use std::time::Instant;
    let mut rng = StdRng::seed_from_u64(5);
    for (c, co, t) in [
        (3, 64, 64),
        (64, 64, 64),
        (64, 128, 64),
        (128, 128, 32),
        (128, 256, 32),
        (256, 256, 16),
    ] {
        let x = rand_t(&mut rng, &[32, c, t, 25])?;
        let w = (rand_t(&mut rng, &[3 * co, c])? * 0.1)?;
        let dense = rand_t(&mut rng, &[3, 25, 25])?;
        let sparse = chain_partitions(25)?;
        let off = rand_t(&mut rng, &[co, 25])?;
        let (mut train, mut infer, mut infer_sparse) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..10 {
            let t0 = Instant::now();
            graph_conv(&x, &w, &dense)?;
            train = train.min(t0.elapsed().as_secs_f64());
            if std::env::var("SPARSE_ONLY").is_err() {
                let t0 = Instant::now();
                graph_conv_infer(&x, &w, &dense, &off, true)?;
                infer = infer.min(t0.elapsed().as_secs_f64());
            }
            let t0 = Instant::now();
            graph_conv_infer(&x, &w, &sparse, &off, true)?;
            infer_sparse = infer_sparse.min(t0.elapsed().as_secs_f64());
        }
        eprintln!(
            "C={c}->{co} T={t}: graph_conv {:.1} ms; infer: dense A {:.1} ms, 73 non-zeros {:.1} ms",
            train * 1e3,
            infer * 1e3,
            infer_sparse * 1e3,
        );
    }
    Ok(())
}

/// CTR-GCN's aggregation at the bench shapes (batch 16 × 2 persons, 3 subsets), best of ten.
/// Measurement only: `cargo test -p crossglg-kernels --release --test fused_vs_plain --
/// --ignored --nocapture`
#[test]
#[ignore]
fn time_subset_aggregate() -> Result<()> {
    use std::time::Instant;
    let mut rng = StdRng::seed_from_u64(7);
    for (c, t) in [(64, 64), (128, 32), (256, 16)] {
        let x = rand_t(&mut rng, &[32, 3, c, t, 25])?;
        let m = rand_t(&mut rng, &[32, 3, c, 25, 25])?;
        let a = rand_t(&mut rng, &[3, 25, 25])?;
        let mut best = f64::MAX;
        for _ in 0..10 {
            let t0 = Instant::now();
            subset_aggregate(&x, &m, &a)?;
            best = best.min(t0.elapsed().as_secs_f64());
        }
        let gflop = 2.0 * 32.0 * 3.0 * (c * t * 25 * 25) as f64 / 1e9;
        eprintln!(
            "C={c} T={t}: subset_aggregate {:.1} ms ({:.0} GFLOP/s)",
            best * 1e3,
            gflop / best
        );
    }
    Ok(())
}
