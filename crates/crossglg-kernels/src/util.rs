//! Helpers to get at CPU f32 data of tensors and storages.

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, DType, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;

/// The contiguous f32 slice behind a CPU storage + layout, or an error naming `op`.
pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{op}: only f32 is supported, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: input must be contiguous (call .contiguous() first)"),
    }
}

/// Runs `f` on the contiguous f32 data of `t` (made contiguous first when needed).
pub(crate) fn with_data<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    if t.dtype() != DType::F32 {
        bail!("{op}: only f32 is supported, got {:?}", t.dtype())
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(slice(cpu, layout, op)?),
        _ => bail!("{op}: only the CPU device is supported"),
    }
}

/// Runs `f` on the contiguous f32 data of every tensor of `ts` (made contiguous first when
/// needed): the backward passes read four or five tensors at once.
pub(crate) fn with_all<const K: usize, R>(
    ts: [&Tensor; K],
    op: &str,
    f: impl FnOnce([&[f32]; K]) -> Result<R>,
) -> Result<R> {
    let cs = ts
        .iter()
        .map(|t| {
            if t.dtype() != DType::F32 {
                bail!("{op}: only f32 is supported, got {:?}", t.dtype())
            }
            t.contiguous()
        })
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = cs.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(K);
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(cpu) => slices.push(slice(cpu, layout, op)?),
            _ => bail!("{op}: only the CPU device is supported"),
        }
    }
    match slices.try_into() {
        Ok(all) => f(all),
        Err(_) => bail!("{op}: internal error, lost a tensor"),
    }
}

/// Wraps an owned f32 buffer as a tensor on the CPU.
pub(crate) fn tensor(v: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu)
}

/// Fails unless `t` is an f32 CPU tensor.
pub(crate) fn check_cpu_f32(t: &Tensor, op: &str, what: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        bail!("{op}: {what} must be f32, got {:?}", t.dtype())
    }
    if !t.device().is_cpu() {
        bail!("{op}: {what} must be on the CPU")
    }
    Ok(())
}

/// Samples per group when a batch gradient is accumulated in parallel. The groups depend on
/// the batch size alone (at most 16 of them), each is accumulated in sample order and the group
/// sums are added in group order, so the result is bit-identical whatever the thread count and
/// scheduling (rayon's `fold`/`reduce` groups by work stealing, which made training runs with
/// the same seed differ in the last bits, then in their accuracy).
pub(crate) fn group_size(n: usize) -> usize {
    n.div_ceil(16).max(1)
}

/// Sums per-group accumulators.
pub(crate) fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
    a
}

/// A zeroed buffer of `n` floats, zero-filled by the rayon pool for large `n`. `vec![0.0; n]`
/// is a `calloc`, which must `memset` memory the tuned allocator hands back for reuse; that
/// serial pass on the calling thread was about 5 % of an InfoGCN inference step.
pub(crate) fn zeros(n: usize) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    if n < 4 * CHUNK {
        return vec![0f32; n];
    }
    planes(n, CHUNK, |_| 0.0)
}

/// `n` floats in planes of `plane` values, plane `i` filled with `value(i)`, written once by
/// the rayon pool (no zero-fill first). The last plane may be shorter.
pub(crate) fn planes(n: usize, plane: usize, value: impl Fn(usize) -> f32 + Sync) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, c)| {
            let x = value(i);
            c.iter_mut().for_each(|e| _ = e.write(x));
        });
    // SAFETY: the first `n` elements (within the capacity reserved above) were all initialised
    // by the loop just above.
    #[allow(unsafe_code)]
    unsafe {
        v.set_len(n)
    };
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn planes_fills_each_plane_with_its_value() {
        let v = super::planes(10, 4, |i| i as f32 + 0.5);
        assert_eq!(v, [0.5, 0.5, 0.5, 0.5, 1.5, 1.5, 1.5, 1.5, 2.5, 2.5]);
        assert!(super::planes(0, 3, |_| 1.0).is_empty());
    }

    #[test]
    fn zeros_is_zero_filled_at_every_size() {
        for n in [0, 5, (1 << 18) - 1, 1 << 18, (1 << 20) + 3] {
            let v = super::zeros(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| *x == 0.0));
        }
    }
}
