//! crossglg's change to the CPU copies (`copy2d_`, `copy_strided_src_` in
//! `src/cpu_backend/mod.rs`): copies of at least 2^15 elements run on the rayon pool. candle's
//! own tests use small tensors, so these check the parallel paths on large ones against
//! indices computed by hand.
use candle_core::{Device, Result, Tensor};

fn iota(dims: &[usize]) -> Result<(Tensor, Vec<f32>)> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
    Ok((Tensor::from_vec(v.clone(), dims, &Device::Cpu)?, v))
}

#[test]
fn large_permute_made_contiguous() -> Result<()> {
    let d = [8, 5, 40, 30];
    let (t, v) = iota(&d)?;
    let got: Vec<f32> = t
        .permute((0, 3, 1, 2))?
        .contiguous()?
        .flatten_all()?
        .to_vec1()?;
    let mut want = Vec::with_capacity(v.len());
    for a in 0..d[0] {
        for l in 0..d[3] {
            for b in 0..d[1] {
                for c in 0..d[2] {
                    want.push(v[((a * d[1] + b) * d[2] + c) * d[3] + l]);
                }
            }
        }
    }
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn large_cat_and_narrow() -> Result<()> {
    let (a, av) = iota(&[6, 7, 1000])?;
    let b = (a.narrow(1, 2, 3)? + 0.5)?; // (6, 3, 1000), contiguous
    let bv: Vec<f32> = b.flatten_all()?.to_vec1()?;
    for dim in [0usize, 1] {
        let (x, y) = if dim == 0 {
            (a.narrow(1, 0, 3)?, b.clone())
        } else {
            (a.clone(), b.clone())
        };
        let got: Vec<f32> = Tensor::cat(&[&x, &y], dim)?.flatten_all()?.to_vec1()?;
        let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let want: Vec<f32> = if dim == 0 {
            xv.iter().chain(&bv).copied().collect()
        } else {
            (0..6)
                .flat_map(|i| {
                    let xa = &av[i * 7000..(i + 1) * 7000];
                    let yb = &bv[i * 3000..(i + 1) * 3000];
                    xa.iter().chain(yb).copied().collect::<Vec<_>>()
                })
                .collect()
        };
        assert_eq!(got, want, "cat along {dim}");
    }
    // a narrow along the middle axis made contiguous: uniform strided blocks
    let got: Vec<f32> = a.narrow(1, 2, 3)?.contiguous()?.flatten_all()?.to_vec1()?;
    let want: Vec<f32> = (0..6)
        .flat_map(|i| av[i * 7000 + 2000..i * 7000 + 5000].to_vec())
        .collect();
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn large_contiguous_block_copy() -> Result<()> {
    // `slice_set` of a whole tensor: one contiguous block for `copy2d`
    let (src, sv) = iota(&[4, 9000])?;
    let dst = Tensor::zeros((4, 9000), candle_core::DType::F32, &Device::Cpu)?;
    dst.slice_set(&src, 0, 0)?;
    let got: Vec<f32> = dst.flatten_all()?.to_vec1()?;
    assert_eq!(got, sv);
    Ok(())
}
